"""Tiny random-weight Qwen2-VL and causal LM, built offline, for tests, the demo and the CPU profile of every recipe.

No weights or tokenizer can be downloaded where this library is tested, so the project makes its own: a byte-level BPE
tokenizer trained locally with the `tokenizers` library (Qwen2's pre-tokenizer regex, Qwen2-VL's special tokens and
chat template), Qwen2-VL's real image and video processors, and a `Qwen2VLForConditionalGeneration` with a few
thousand parameters per layer. Everything is saved with `save_pretrained`, so it loads by path with the same auto
classes and processor calls as `Qwen/Qwen2-VL-2B-Instruct`:

    >>> from transformers import AutoModelForImageTextToText, AutoProcessor
    >>> path = tiny_vlm_path()
    >>> model = AutoModelForImageTextToText.from_pretrained(path)
    >>> processor = AutoProcessor.from_pretrained(path)

Builds are seeded (two builds give identical files) and cached under `MEDVLM_TRL_CACHE` (default
`~/.cache/medvlm_trl`), keyed by the build version, so a test session builds each model once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from medvlm_trl.cli import error_boundary

# Bump when anything below changes what is built; the cache key includes it.
TINY_BUILD_VERSION = "3"

IMAGE_PATCH = 14
MERGE_SIZE = 2
# Pixel bounds of the tiny processor: 4 to 64 merged image tokens per image keeps CPU steps fast.
TINY_MIN_PIXELS = 4 * (IMAGE_PATCH * MERGE_SIZE) ** 2
TINY_MAX_PIXELS = 64 * (IMAGE_PATCH * MERGE_SIZE) ** 2

# Qwen2-VL's special tokens, in the order the real tokenizer adds them after its BPE vocabulary.
QWEN2_VL_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The chat template shipped with Qwen/Qwen2-VL-2B-Instruct (chat_template.json).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# A plain chat template for the tiny causal LM (judge / perplexity models are used on raw text mostly).
CAUSAL_LM_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN2_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

TINY_TEXT_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
}
TINY_VISION_CONFIG = {
    "depth": 2,
    "embed_dim": 32,
    "hidden_size": 64,  # the merger projects to the text hidden size
    "num_heads": 4,
    "mlp_ratio": 2,
    "patch_size": IMAGE_PATCH,
    "spatial_merge_size": MERGE_SIZE,
    "temporal_patch_size": 2,
}
TINY_VOCAB_SIZE = 1024
SEED = 1234


def _training_corpus(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Text the tiny tokenizer learns its merges from: the library's prompts, tags and medical VQA words."""
    words = (
        "think answer question options image scan shows which of the following is the most likely diagnosis "
        "MRI CT X-ray ultrasound magnetic resonance imaging computed tomography radiograph modality organ brain "
        "head neck chest lung heart abdomen liver kidney spine knee shoulder pelvis axial sagittal coronal "
        "plane orientation left right mirrored flipped upright rotated normal abnormal lesion tumor fracture "
        "a an the is are was this that with without in on of to for and or not yes no because since so "
        "correct choice letter single provide your task output thinking process final tags reasoning "
        "medical expert judge whether coherent relevant clinical finding patient"
    ).split()
    lines = [
        "<think> The image is an axial MRI slice of the brain. </think> <answer>B</answer>",
        "<think>\nThis looks like a CT scan of the abdomen.\n</think>\n<answer>A</answer>",
        "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.",
        "Your task: provide the correct single-letter choice (A, B, C, D, ...)",
        "A) MRI\nB) CT\nC) X-ray\nD) Ultrasound",
        "E) none F) all 0 1 2 3 4 5 6 7 8 9 10 100 . , : ; ( ) ? ! ' \" - / _",
    ]
    corpus = (lines + list(extra)) * 20
    for i in range(len(words)):
        corpus.append(" ".join(words[i : i + 12]))
        corpus.append(" ".join(w.capitalize() for w in words[i : i + 6]) + ".")
    return corpus


def build_tokenizer(
    vocab_size: int = TINY_VOCAB_SIZE, chat_template: str = QWEN2_VL_CHAT_TEMPLATE, extra_corpus: tuple[str, ...] = ()
):
    """Train a byte-level BPE like Qwen2's on a small local corpus (plus `extra_corpus` lines) and wrap it as a
    `Qwen2Tokenizer`."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    raw = Tokenizer(models.BPE())
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
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
    raw.train_from_iterator(_training_corpus(extra_corpus), trainer=trainer)
    state = json.loads(raw.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN2_VL_SPECIAL_TOKENS[1:],
        model_max_length=32768,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN2_VL_SPECIAL_TOKENS[1:]})
    tokenizer.add_tokens(["<|endoftext|>"], special_tokens=True)
    tokenizer.chat_template = chat_template
    tokenizer.padding_side = "left"
    return tokenizer


def build_processor(tokenizer, min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS):
    """Qwen2-VL's real processor classes around the tiny tokenizer, with small pixel bounds."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    image_processor = Qwen2VLImageProcessor(
        size=size, patch_size=IMAGE_PATCH, merge_size=MERGE_SIZE, temporal_patch_size=2
    )
    video_processor = Qwen2VLVideoProcessor(
        size=size, patch_size=IMAGE_PATCH, merge_size=MERGE_SIZE, temporal_patch_size=2
    )
    return Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def qwen2_vl_config(tokenizer, text_config: dict, vision_config: dict):
    """A `Qwen2VLConfig` around `tokenizer`: its vocabulary size and Qwen2-VL's special-token ids, untied embeddings."""
    from transformers import Qwen2VLConfig

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN2_VL_SPECIAL_TOKENS}
    text = dict(
        text_config,
        vocab_size=len(tokenizer),
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    return Qwen2VLConfig(
        text_config=text,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def greedy_generation_config(tokenizer):
    """The tiny models' generation config: greedy, stopping at `<|im_end|>` or `<|endoftext|>`."""
    from transformers import GenerationConfig

    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return GenerationConfig(bos_token_id=pad, eos_token_id=[eos, pad], pad_token_id=pad, do_sample=False)


def build_tiny_vlm(out_dir: str | os.PathLike, seed: int = SEED) -> Path:
    """Build and save a tiny random-weight Qwen2-VL model and its processor into `out_dir`."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(qwen2_vl_config(tokenizer, TINY_TEXT_CONFIG, TINY_VISION_CONFIG))
    model.generation_config = greedy_generation_config(tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_causal_lm(out_dir: str | os.PathLike, seed: int = SEED) -> Path:
    """Build and save a tiny random-weight Qwen2 causal LM and tokenizer (stand-in for BioGPT or a judge LLM)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(chat_template=CAUSAL_LM_CHAT_TEMPLATE)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text = {k: v for k, v in TINY_TEXT_CONFIG.items() if k != "rope_parameters"}
    config = Qwen2Config(
        **text,
        vocab_size=len(tokenizer),
        bos_token_id=pad,
        eos_token_id=eos,
        pad_token_id=pad,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = greedy_generation_config(tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("MEDVLM_TRL_CACHE", Path.home() / ".cache" / "medvlm_trl"))


@contextlib.contextmanager
def _quiet_progress_bars():
    """transformers' progress bars (`save_pretrained`'s "Writing model shards") off for the block, then as before."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def build_once(target: Path, builder, marker: str = "config.json") -> Path:
    """Build into a temporary folder beside `target` and rename it into place (unless `target/marker` exists), so
    concurrent test workers never see half a build; the builds are seeded, so a lost race leaves an identical copy."""
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with _quiet_progress_bars():  # a first build under a command must not print into its one-line error
            builder(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; theirs is identical (seeded build)
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _cached(name: str, builder) -> Path:
    """`build_once` under the cache, keyed by the build version and the transformers version."""
    import transformers

    key = hashlib.sha1(f"{TINY_BUILD_VERSION}-{transformers.__version__}".encode()).hexdigest()[:10]
    return build_once(cache_dir() / f"{name}-{key}", builder)


def tiny_vlm_path() -> Path:
    """Directory of the cached tiny Qwen2-VL (built on first call)."""
    return _cached("tiny-qwen2-vl", build_tiny_vlm)


def tiny_causal_lm_path() -> Path:
    """Directory of the cached tiny causal LM (built on first call)."""
    return _cached("tiny-causal-lm", build_tiny_causal_lm)


@error_boundary("make-tiny-model")
def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl make-tiny-model OUT_DIR [--causal-lm | --base | --family qwen2_vl|qwen2_5_vl|qwen3_vl|qwen3_5]`."""
    from medvlm_trl.recipe import OneLineArgumentParser
    from medvlm_trl.tiny_families import FAMILIES, build_tiny_family

    parser = OneLineArgumentParser(prog="medvlm-trl make-tiny-model", description=main.__doc__)
    parser.add_argument("out_dir", help="folder to save the model and its processor into")
    parser.add_argument("--causal-lm", action="store_true", help="build the tiny causal LM instead of the Qwen2-VL")
    parser.add_argument(
        "--family", choices=FAMILIES, default="qwen2_vl", help="which vision-language family (medvlm_trl.tiny_families)"
    )
    parser.add_argument(
        "--base",
        action="store_true",
        help="build the tiny base model of the phantom world (medvlm_trl.tiny_base: a cold start of a few minutes)",
    )
    parser.add_argument("--seed", type=int, default=None, help="weights seed (default: the builder's own)")
    args = parser.parse_args(argv)
    if args.base:
        from medvlm_trl.tiny_base import BASE_SEED, build_tiny_base

        out = build_tiny_base(args.out_dir, seed=BASE_SEED if args.seed is None else args.seed, log=print)
        print(f"saved the tiny base model to {out}")
        return 0
    seed = SEED if args.seed is None else args.seed
    if args.causal_lm:
        out, what = build_tiny_causal_lm(args.out_dir, seed=seed), "tiny causal LM"
    else:
        out, what = build_tiny_family(args.family, args.out_dir, seed=seed), f"tiny {args.family}"
    print(f"saved {what} to {out}")
    return 0
