"""Tiny random-weight builds of the newer Qwen vision-language families: Qwen2.5-VL, Qwen3-VL and Qwen3.5.

Each build keeps what makes its family different from Qwen2-VL for this library, and shrinks everything else:

| family | shrunk from | model class | processor | patch x merge | what is kept |
|---|---|---|---|---|---|
| `qwen2_vl` | `Qwen/Qwen2-VL-2B-Instruct` | `Qwen2VLForConditionalGeneration` | `Qwen2VLProcessor` | 14 x 2 | (`medvlm_trl.tiny`) |
| `qwen2_5_vl` | `Qwen/Qwen2.5-VL-3B-Instruct` | `Qwen2_5_VLForConditionalGeneration` | `Qwen2_5_VLProcessor` | 14 x 2 | windowed vision attention with one full-attention block, SwiGLU vision MLP |
| `qwen3_vl` | `Qwen/Qwen3-VL-2B-Instruct` | `Qwen3VLForConditionalGeneration` | `Qwen3VLProcessor` | 16 x 2 | learned vision position embeddings, a DeepStack layer, interleaved M-RoPE, Qwen3's added tokens (`<think>`, `</think>`, tool tags), no default system turn |
| `qwen3_5` | `Qwen/Qwen3.5-0.8B` | `Qwen3_5ForConditionalGeneration` | `Qwen3VLProcessor` + `Qwen3_5Tokenizer` | 16 x 2 | one Gated DeltaNet (linear attention) layer and one gated full-attention layer, partial rotary M-RoPE, a generation prompt that opens `<think>` unless `enable_thinking=False` |

The tokenizer is the same locally trained byte-level BPE as `medvlm_trl.tiny`'s (its corpus), with each family's
special tokens, chat template and tokenizer class; image and video processors are transformers' own classes with the
family's patch size, merge size and normalisation, and pixel bounds of 4 to 64 image tokens of the family's size.
The chat templates are written here: they reproduce the parts of the public templates that this library exercises
(system turn, image and video placeholders, generation prompt, Qwen3.5's think opener), not tool calling.

Builds are seeded and cached like `medvlm_trl.tiny`'s (`tiny_family_path(family)`); `qwen2_vl` is
`medvlm_trl.tiny.tiny_vlm_path()` itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

# Bump when anything below changes what is built; it is part of each family's cache folder name.
FAMILY_BUILD_VERSION = "1"

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5")


@dataclass(frozen=True)
class FamilySpec:
    """What a family's tiny build is shrunk from and how its images are cut into tokens."""

    name: str
    public_model: str  # the public checkpoint whose architecture the tiny build shrinks
    model_class: str
    patch_size: int
    merge_size: int

    @property
    def factor(self) -> int:
        """Pixels per side of one image token: patch size x spatial merge size."""
        return self.patch_size * self.merge_size

    @property
    def min_pixels(self) -> int:
        return 4 * self.factor**2

    @property
    def max_pixels(self) -> int:
        return 64 * self.factor**2


SPECS = {
    "qwen2_vl": FamilySpec("qwen2_vl", "Qwen/Qwen2-VL-2B-Instruct", "Qwen2VLForConditionalGeneration", 14, 2),
    "qwen2_5_vl": FamilySpec("qwen2_5_vl", "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen2_5_VLForConditionalGeneration", 14, 2),
    "qwen3_vl": FamilySpec("qwen3_vl", "Qwen/Qwen3-VL-2B-Instruct", "Qwen3VLForConditionalGeneration", 16, 2),
    "qwen3_5": FamilySpec("qwen3_5", "Qwen/Qwen3.5-0.8B", "Qwen3_5ForConditionalGeneration", 16, 2),
}

# Qwen3's tokens after the Qwen2-VL ones, in the order its tokenizer adds them; only the `<|...|>` ones are special
# (so `<think>` survives `skip_special_tokens=True`, as in the real tokenizer).
QWEN3_ADDED_TOKENS = [
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", True),
    ("<|fim_middle|>", True),
    ("<|fim_suffix|>", True),
    ("<|fim_pad|>", True),
    ("<|repo_name|>", True),
    ("<|file_sep|>", True),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
]

_CONTENT_LOOP = (
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
)
_COUNTERS = "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"

# Qwen3-VL Instruct: ChatML turns, no system turn unless the conversation has one.
QWEN3_VL_CHAT_TEMPLATE = (
    _COUNTERS + "{% for message in messages %}<|im_start|>{{ message['role'] }}\n" + _CONTENT_LOOP + "<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3.5: as Qwen3-VL, but the generation prompt opens a think block (closed at once with enable_thinking=False).
QWEN3_5_CHAT_TEMPLATE = (
    _COUNTERS + "{% for message in messages %}<|im_start|>{{ message['role'] }}\n" + _CONTENT_LOOP + "<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)

QWEN3_5_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

TEXT_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}
VISION_CONFIG = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "out_hidden_size": 64}


def spec(family: str) -> FamilySpec:
    """The family's spec; an unknown name is an error listing the known ones."""
    if family not in SPECS:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    return SPECS[family]


def _bpe_state(regex: str, vocab_size: int) -> tuple[dict, list]:
    """The vocabulary and merges of the tiny byte-level BPE, trained on `medvlm_trl.tiny`'s corpus."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    from medvlm_trl.tiny import _training_corpus

    raw = Tokenizer(models.BPE())
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    raw.train_from_iterator(_training_corpus(), trainer=trainer)
    state = json.loads(raw.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    return state["vocab"], merges


def build_family_tokenizer(family: str):
    """The tiny tokenizer of `family`: its tokenizer class, special and added tokens and chat template."""
    from tokenizers import AddedToken

    from medvlm_trl.tiny import (
        QWEN2_PRETOKENIZE_REGEX,
        QWEN2_VL_CHAT_TEMPLATE,
        QWEN2_VL_SPECIAL_TOKENS,
        TINY_VOCAB_SIZE,
    )
    from medvlm_trl.tiny import build_tokenizer as build_qwen2_vl_tokenizer

    spec(family)
    if family in ("qwen2_vl", "qwen2_5_vl"):  # Qwen2.5-VL ships Qwen2-VL's tokenizer and chat template
        return build_qwen2_vl_tokenizer(chat_template=QWEN2_VL_CHAT_TEMPLATE)
    if family == "qwen3_vl":
        from transformers import Qwen2Tokenizer as tokenizer_class

        regex, template = QWEN2_PRETOKENIZE_REGEX, QWEN3_VL_CHAT_TEMPLATE
    else:
        from transformers import Qwen3_5Tokenizer as tokenizer_class

        regex, template = QWEN3_5_PRETOKENIZE_REGEX, QWEN3_5_CHAT_TEMPLATE
    vocab, merges = _bpe_state(regex, TINY_VOCAB_SIZE)
    tokenizer = tokenizer_class(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
    )
    tokenizer.add_tokens(["<|endoftext|>"], special_tokens=True)
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN2_VL_SPECIAL_TOKENS[1:]})
    for token, special in QWEN3_ADDED_TOKENS:
        tokenizer.add_tokens([AddedToken(token, special=special, normalized=False)], special_tokens=special)
    tokenizer.chat_template = template
    tokenizer.padding_side = "left"
    return tokenizer


def build_family_processor(family: str, tokenizer):
    """transformers' processor classes of `family` around the tiny tokenizer, at 4 to 64 image tokens an image."""
    import transformers
    from transformers import Qwen2VLImageProcessor

    s = spec(family)
    size = {"shortest_edge": s.min_pixels, "longest_edge": s.max_pixels}
    grid = dict(patch_size=s.patch_size, merge_size=s.merge_size, temporal_patch_size=2)
    if family in ("qwen2_vl", "qwen2_5_vl"):
        image_processor = Qwen2VLImageProcessor(size=size, **grid)
        video_processor = transformers.Qwen2VLVideoProcessor(size=size, **grid)
        processor_class = transformers.Qwen2VLProcessor if family == "qwen2_vl" else transformers.Qwen2_5_VLProcessor
    else:  # Qwen3-VL and Qwen3.5 normalise with mean = std = 0.5 and use Qwen3-VL's processor classes
        half = [0.5, 0.5, 0.5]
        image_processor = Qwen2VLImageProcessor(size=size, image_mean=half, image_std=half, **grid)
        video_processor = transformers.Qwen3VLVideoProcessor(size=size, image_mean=half, image_std=half, **grid)
        processor_class = transformers.Qwen3VLProcessor
    return processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )


# vLLM's CPU attention needs a head size of 32 to 512: `engine_sized=True` widens the text model to head_dim 64 (the
# real models' 128 or 256 are not needed); tokenizer, processor and every other setting stay the tiny ones.
ENGINE_TEXT = {"hidden_size": 256, "intermediate_size": 512, "head_dim": 64}
ENGINE_MROPE = {"qwen2_5_vl": [8, 12, 12], "qwen3_vl": [8, 12, 12], "qwen3_5": [3, 3, 2]}


def _family_config(family: str, ids: dict[str, int], vocab_size: int, engine_sized: bool = False):
    s = spec(family)
    tokens = dict(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision = dict(VISION_CONFIG, patch_size=s.patch_size, spatial_merge_size=s.merge_size, temporal_patch_size=2)
    common = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config = _base_family_config(family, s, tokens, vision, common, vocab_size)
    if engine_sized:
        text = config.text_config
        for key, value in ENGINE_TEXT.items():
            setattr(text, key, value)
        text.rope_parameters["mrope_section"] = ENGINE_MROPE[family]
        if family == "qwen3_5":
            text.linear_key_head_dim = text.linear_value_head_dim = 128  # the CPU Gated DeltaNet kernel's size
        config.vision_config.out_hidden_size = ENGINE_TEXT["hidden_size"]
    return config


def _base_family_config(family, s, tokens, vision, common, vocab_size):
    import transformers

    if family == "qwen2_5_vl":
        text = dict(
            TEXT_CONFIG,
            vocab_size=vocab_size,
            **tokens,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        )
        # Windowed attention over 2x2 tokens (the public 112 px window is 4x4 tokens), the last block full.
        vision.update(window_size=2 * s.factor, fullatt_block_indexes=[1], hidden_act="silu")
        return transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)
    if family == "qwen3_vl":
        text = dict(
            TEXT_CONFIG,
            vocab_size=vocab_size,
            head_dim=16,
            **tokens,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        )
        vision.update(num_position_embeddings=64, deepstack_visual_indexes=[0])
        return transformers.Qwen3VLConfig(text_config=text, vision_config=vision, **common)
    if family == "qwen3_5":
        text = dict(
            TEXT_CONFIG,
            vocab_size=vocab_size,
            head_dim=32,
            layer_types=["linear_attention", "full_attention"],
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
            **tokens,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000000.0,
                "partial_rotary_factor": 0.25,
                "mrope_section": [2, 1, 1],
                "mrope_interleaved": True,
            },
        )
        vision.update(num_position_embeddings=64)
        return transformers.Qwen3_5Config(text_config=text, vision_config=vision, **common)
    raise ValueError(f"no tiny config for {family!r} here (qwen2_vl is medvlm_trl.tiny.build_tiny_vlm)")


def build_tiny_family(
    family: str, out_dir: str | os.PathLike, seed: int | None = None, engine_sized: bool = False
) -> Path:
    """Build and save the tiny random-weight model of `family` and its processor into `out_dir` (`engine_sized`: with
    the wider text model vLLM's CPU backend accepts, `ENGINE_TEXT`; not for `qwen2_vl`, see tests/training/test_vllm_engine.py)."""
    import torch
    import transformers

    from medvlm_trl.tiny import QWEN2_VL_SPECIAL_TOKENS, SEED, build_tiny_vlm, greedy_generation_config

    s = spec(family)
    seed = SEED if seed is None else seed
    if family == "qwen2_vl":
        return build_tiny_vlm(out_dir, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_family_tokenizer(family)
    processor = build_family_processor(family, tokenizer)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN2_VL_SPECIAL_TOKENS}
    config = _family_config(family, ids, len(tokenizer), engine_sized)
    torch.manual_seed(seed)
    model = getattr(transformers, s.model_class)(config)
    model.generation_config = greedy_generation_config(tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def tiny_family_path(family: str) -> Path:
    """Directory of the cached tiny model of `family` (built on first call); `qwen2_vl` is `tiny_vlm_path()`."""
    from medvlm_trl.tiny import _cached, tiny_vlm_path

    spec(family)
    if family == "qwen2_vl":
        return tiny_vlm_path()
    name = f"tiny-{family.replace('_', '-')}-f{FAMILY_BUILD_VERSION}"
    return _cached(name, lambda out: build_tiny_family(family, out))
