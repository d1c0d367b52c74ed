"""The tiny *base* model of the phantom world: a tiny Qwen2-VL that behaves like a zero-shot base model.

A random-weight model never writes `<think>...</think><answer>...</answer>`, so every format and accuracy reward is 0
and GRPO has nothing to learn from. Real base models (Qwen2-VL-2B) write the format often and answer a medical
question they cannot read near chance. This module makes a model that does the same, offline and deterministically:

1. the tiny Qwen2-VL of `medvlm_trl.tiny` (larger text and vision stacks, see `BASE_TEXT_CONFIG`), with a tokenizer
   that also knows the phantom world's words and reads every phantom option line (`B) large`) as one token, whose
   embedding starts as the sum of its letter's and its text's (`_structured_option_embeddings`). A model this small
   did not learn, within a few hundred cold-start steps, to find which letter stands before an option text spelt
   over several tokens (measured: the letter it answered matched the option its reasoning named no more often than
   chance); with one token per option line, naming an option and answering its letter are single look-ups;
2. a short supervised *cold start* on phantom questions drawn from a seed range of their own (`split="coldstart"`,
   disjoint from the training and test rows) under MedVLM-R1's r1 prompt, whose targets carry **none of the truth**:

       <think>Finding: {a random option, e.g. B) large}.</think><answer>{its letter, B}</answer>

   The model so learns the format and to answer the option its reasoning names, but the option it names is a guess
   that does not depend on the image: its answers are right about 1 / (number of options) of the time.

GRPO then has a signal that can only come through the image: the rollouts whose finding matches the picture are the
ones the accuracy reward pays.

`tiny_base_path()` builds it once (about two minutes on 2 CPU cores) and caches it under `MEDVLM_TRL_CACHE` like
`medvlm_trl.tiny`; `medvlm-trl make-tiny-model OUT --base` saves a copy. Same seed, same thread count, same files.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from medvlm_trl.tiny import IMAGE_PATCH, MERGE_SIZE

TINY_BASE_VERSION = "1"
BASE_SEED = 4321
# Image bounds of the phantom world: 112 x 112 pixels, 4 x 4 merged image tokens.
BASE_MIN_PIXELS = 16 * (IMAGE_PATCH * MERGE_SIZE) ** 2
BASE_MAX_PIXELS = 16 * (IMAGE_PATCH * MERGE_SIZE) ** 2

BASE_TEXT_CONFIG = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 4096,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
}
BASE_VISION_CONFIG = {
    "depth": 2,
    "embed_dim": 64,
    "hidden_size": 128,
    "num_heads": 4,
    "mlp_ratio": 2,
    "patch_size": IMAGE_PATCH,
    "spatial_merge_size": MERGE_SIZE,
    "temporal_patch_size": 2,
}
COLD_START = {"rows": 3000, "steps": 200, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 20}
THINK_TEMPLATE = "<think>Finding: {letter}) {finding}.</think><answer>{letter}</answer>"


def cold_start_target(row: dict, rng: random.Random) -> str:
    """The cold start's completion for one row: a random option named in the think block, its letter answered."""
    from medvlm_trl.data.prompts import LETTERS

    i = rng.randrange(len(row["options"]))
    return THINK_TEMPLATE.format(finding=row["options"][i], letter=LETTERS[i])


def option_tokens() -> list[str]:
    """Every phantom option line as the tokenizer's one token: `A) small`, ..., `F) 6`."""
    from medvlm_trl.data.phantom import QUESTION_TYPES
    from medvlm_trl.data.prompts import LETTERS

    words = [w for _, vocab in QUESTION_TYPES.values() for w in vocab]
    return [f"{letter}) {word}" for letter in LETTERS for word in words]


def _structured_option_embeddings(model, tokenizer) -> None:
    """Each option token starts as (its letter's vector + its text's vectors), in the input and output embeddings,
    so that `B) large` and `D) large` share the direction of "large" and `B) large` and `B) small` that of B."""
    import torch

    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    with torch.no_grad():
        for token in option_tokens():
            letter, word = token.split(") ", 1)
            tid = tokenizer.convert_tokens_to_ids(token)
            parts = tokenizer(letter)["input_ids"] + tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            emb[tid] = emb[parts].sum(0) / len(parts) ** 0.5
            head[tid] = head[parts].sum(0) / len(parts) ** 0.5


def _phantom_words() -> list[str]:
    from medvlm_trl.data.phantom import QUESTION_TYPES

    lines = []
    for question, vocab in QUESTION_TYPES.values():
        lines.append(f"Case 100001. {question}")
        lines += [THINK_TEMPLATE.format(finding=v, letter=L) for v, L in zip(vocab, "ABCDEF")]
        lines.append("\n".join(f"{L}) {v}" for L, v in zip("ABCDEF", vocab)))
    return lines


def build_tiny_base(out_dir: str | os.PathLike, seed: int = BASE_SEED, steps: int | None = None, log=None) -> Path:
    """Build the random tiny Qwen2-VL, run the cold start, save model and processor into `out_dir`."""
    import torch
    from transformers import GenerationConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from medvlm_trl.data.phantom import STYLES, make_items
    from medvlm_trl.data.prompts import build_prompt
    from medvlm_trl.tiny import build_processor, build_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(extra_corpus=_phantom_words())
    tokenizer.add_tokens(option_tokens())
    processor = build_processor(tokenizer, min_pixels=BASE_MIN_PIXELS, max_pixels=BASE_MAX_PIXELS)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")}
    special = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")}
    special |= {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>")}
    text_config = dict(
        BASE_TEXT_CONFIG,
        vocab_size=len(tokenizer),
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    config = Qwen2VLConfig(
        text_config=text_config,
        vision_config=BASE_VISION_CONFIG,
        image_token_id=special["<|image_pad|>"],
        video_token_id=special["<|video_pad|>"],
        vision_start_token_id=special["<|vision_start|>"],
        vision_end_token_id=special["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    _structured_option_embeddings(model, tokenizer)

    # The cold start: teacher-forced r1-prompt completions whose finding is a random option.
    settings = dict(COLD_START, **({"steps": steps} if steps is not None else {}))
    per_style = settings["rows"] // len(STYLES)
    rows = [r for style in STYLES for r in make_items("coldstart", style, per_style)]
    rng = random.Random(seed)
    rng.shuffle(rows)
    tokenizer.padding_side = "right"
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["learning_rate"], weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / settings["warmup_steps"]) * max(0.0, 1 - s / settings["steps"])
    )
    model.train()
    bs = settings["batch_size"]
    for step in range(settings["steps"]):
        batch = [rows[(step * bs + j) % len(rows)] for j in range(bs)]
        prompts = [
            processor.apply_chat_template(
                build_prompt(r["question"], r["options"], "r1"), tokenize=False, add_generation_prompt=True
            )
            for r in batch
        ]
        targets = [cold_start_target(r, rng) + "<|im_end|>" for r in batch]
        enc = processor(
            text=[p + t for p, t in zip(prompts, targets)],
            images=[r["image"] for r in batch],
            return_tensors="pt",
            padding=True,
        )
        labels = enc["input_ids"].clone()
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        for j, t in enumerate(targets):  # loss on the completion only (right padding: it ends each sequence)
            labels[j, : lengths[j] - len(tokenizer(t)["input_ids"])] = -100
        labels[enc["attention_mask"] == 0] = -100
        loss = model(**enc, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if log is not None and (step % 25 == 0 or step == settings["steps"] - 1):
            log(f"cold start step {step}: loss {loss.item():.4f}")
    model.eval()
    tokenizer.padding_side = "left"
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def tiny_base_path() -> Path:
    """Directory of the cached tiny base model (built on first call: the cold start takes a few minutes)."""
    from medvlm_trl.tiny import _cached

    return _cached(f"tiny-base-v{TINY_BASE_VERSION}", build_tiny_base)
