"""The tiny *base* model of the phantom world: a tiny Qwen2-VL that behaves like a zero-shot base model.

A random-weight model never writes `<think>...</think><answer>...</answer>`, so every format and accuracy reward is 0
and GRPO has nothing to learn from. Real base models (Qwen2-VL-2B) write the format often and answer a medical
question they cannot read near chance. This module makes a model that does the same, offline and deterministically:

1. the tiny Qwen2-VL of `medvlm_trl.tiny` (larger text and vision stacks, see `BASE_TEXT_CONFIG`), with a tokenizer
   that also knows the phantom world's words and reads as one token each: the four tags, every phantom option line
   of a prompt (`B) large`) and every finding the reasoning can name (`large, option B`). Each of the last two starts
   as the sum of its letter's and its text's embeddings (`_structured_option_embeddings`). The tags are tokens of
   their own because the byte-level merges glued the answer letter to the tag before it (`>B`), a token unrelated
   to `B`, which the model then failed to copy;
2. *another task* first (`PRETRAIN`): text-only option lists without an image, whose completion names a random
   option and answers its letter, the look-up "which letter stands before this option" in short sequences, where a
   model this small learns it within a few hundred steps;
3. a short supervised *cold start* on phantom questions drawn from a seed range of their own (`split="coldstart"`,
   disjoint from the training and test rows) under MedVLM-R1's r1 prompt, whose targets carry **none of the truth**:

       <think>Finding: {a random option, e.g. large}, option {its letter}.</think><answer>{its letter}</answer>

   The option it names is a guess that does not depend on the image, so its answers are right about
   1 / (number of options) of the time.

Measured 2026-12-02 on the held-out MRI test rows (experiments of issue 15, 150 rows): greedy format 100%, sampled
(temperature 1) format 99-100%, and the answered letter is that of the named option in 100% of greedy and 98% of
sampled answers (version 1 of this build, without step 2 and the tag tokens: 44% and 16%); greedy strict accuracy
at the random guess. What it does *not* do is read the image: GRPO from it still does not raise held-out accuracy
(README, "Two commands on a fresh machine", and `bench/perception_probe.py` for the measured reason).

`tiny_base_path()` builds it once (about 2 minutes on an idle 2-core machine) and caches it under `MEDVLM_TRL_CACHE`
like `medvlm_trl.tiny`; `medvlm-trl make-tiny-model OUT --base` saves a copy. Same seed, same thread count, same files.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from medvlm_trl.tiny import IMAGE_PATCH, MERGE_SIZE

TINY_BASE_VERSION = "2"
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
PRETRAIN = {"steps": 600, "batch_size": 32, "learning_rate": 3e-3, "seed": 7}
COLD_START = {"rows": 3000, "steps": 200, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 20}
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
EOS = "<|im_end|>"  # ends every teacher-forced completion
THINK_TEMPLATE = "<think>Finding: {finding}, option {letter}.</think><answer>{letter}</answer>"


def cold_start_target(row: dict, rng: random.Random) -> str:
    """The cold start's completion for one row: a random option named in the think block, its letter answered."""
    from medvlm_trl.data.prompts import LETTERS

    i = rng.randrange(len(row["options"]))
    return THINK_TEMPLATE.format(finding=row["options"][i], letter=LETTERS[i])


OPTION_TOKEN = "{letter}) {word}"  # an option line of a prompt, as one token
FINDING_TOKEN = "{word}, option {letter}"  # a finding the reasoning names, as one token (see THINK_TEMPLATE)


def _words() -> list[str]:
    from medvlm_trl.data.phantom import QUESTION_TYPES

    return [w for _, vocab in QUESTION_TYPES.values() for w in vocab]


def _tokens(template: str) -> list[tuple[str, str, str]]:
    """(token, letter, word) of every letter and phantom word, spelt by `template`."""
    from medvlm_trl.data.prompts import LETTERS

    return [(template.format(letter=L, word=w), L, w) for L in LETTERS for w in _words()]


def option_tokens() -> list[str]:
    """Every phantom option line of a prompt as the tokenizer's one token: `A) small`, ..., `F) 6`."""
    return [token for token, _, _ in _tokens(OPTION_TOKEN)]


def finding_tokens() -> list[str]:
    """Every finding the reasoning names as one token: `small, option A`, ..., `6, option F`."""
    return [token for token, _, _ in _tokens(FINDING_TOKEN)]


def pretrain_example(rng: random.Random) -> tuple[str, str]:
    """One example of the text-only task before the cold start: a question and its option lines (no image, no
    instructions) and a completion that names a random option and answers its letter."""
    from medvlm_trl.data.phantom import QUESTION_TYPES
    from medvlm_trl.data.prompts import LETTERS, format_options

    question, vocab = QUESTION_TYPES[rng.choice(sorted(QUESTION_TYPES))]
    options = rng.sample(vocab, rng.randint(2, min(len(vocab), len(LETTERS))))
    i = rng.randrange(len(options))
    return f"{question}\n{format_options(options)}\n", THINK_TEMPLATE.format(finding=options[i], letter=LETTERS[i])


def _structured_option_embeddings(model, tokenizer) -> None:
    """Each option and finding token starts as (its letter's vector + its text's vectors), in the input and output
    embeddings, so that `B) large` and `large, option D` share the direction of "large" and `B) large` and
    `small, option B` that of B."""
    compose_embeddings(
        model,
        [
            (
                tokenizer.convert_tokens_to_ids(token),
                tokenizer(letter)["input_ids"] + tokenizer(" " + word, add_special_tokens=False)["input_ids"],
            )
            for token, letter, word in _tokens(OPTION_TOKEN) + _tokens(FINDING_TOKEN)
        ],
    )


def compose_embeddings(model, pieces) -> None:
    """For each `(token id, part ids)`: the token's input and output embeddings become the sum of its parts' divided
    by the square root of their number (a new token starts in the direction of the words it stands for)."""
    import torch

    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    with torch.no_grad():
        for tid, parts in pieces:
            emb[tid] = emb[parts].sum(0) / len(parts) ** 0.5
            head[tid] = head[parts].sum(0) / len(parts) ** 0.5


def _phantom_words() -> list[str]:
    from medvlm_trl.data.phantom import QUESTION_TYPES
    from medvlm_trl.data.prompts import LETTERS, format_options

    lines = []
    for question, vocab in QUESTION_TYPES.values():
        lines.append(f"Case 100001. {question}")
        lines += [THINK_TEMPLATE.format(finding=v, letter=L) for v, L in zip(vocab, LETTERS)]
        lines.append(format_options(vocab))
    return lines


def _completion_loss(model, tokenizer, enc, targets: list[str]):
    """Teacher-forced loss on the completions only (right padding: each completion ends its sequence)."""
    labels = enc["input_ids"].clone()
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    for j, t in enumerate(targets):
        labels[j, : lengths[j] - len(tokenizer(t)["input_ids"])] = -100
    labels[enc["attention_mask"] == 0] = -100
    return model(**enc, labels=labels).loss


def _step(model, optimizer, loss, schedule=None) -> None:
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    if schedule is not None:
        schedule.step()
    optimizer.zero_grad()


def train_text_task(model, tokenizer, example, *, steps: int, batch_size: int, learning_rate: float, log=None):
    """`steps` teacher-forced AdamW steps on text-only `(prompt, completion)` pairs drawn by `example()` (each
    completion ends with EOS; right padding)."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    for step in range(steps):
        batch = [example() for _ in range(batch_size)]
        targets = [t + EOS for _, t in batch]
        enc = tokenizer([p + t for (p, _), t in zip(batch, targets)], return_tensors="pt", padding=True)
        loss = _completion_loss(model, tokenizer, enc, targets)
        _step(model, optimizer, loss)
        if log is not None and (step % 100 == 0 or step == steps - 1):
            log(f"text-only task step {step}: loss {loss.item():.4f}")


def train_cold_start(
    model, processor, rows, target, *, steps: int, batch_size: int, learning_rate: float, warmup_steps: int, log=None
):
    """`steps` teacher-forced AdamW steps on phantom `rows` (cycled in order) under MedVLM-R1's r1 prompt, the
    completion of each row `target(row)` (EOS added); linear warm-up over `warmup_steps`, then linear decay to 0."""
    import torch

    from medvlm_trl.data.prompts import build_prompt

    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup_steps) * max(0.0, 1 - s / steps)
    )
    for step in range(steps):
        batch = [rows[(step * batch_size + j) % len(rows)] for j in range(batch_size)]
        prompts = [
            processor.apply_chat_template(
                build_prompt(r["question"], r["options"], "r1"), tokenize=False, add_generation_prompt=True
            )
            for r in batch
        ]
        targets = [target(r) + EOS for r in batch]
        enc = processor(
            text=[p + t for p, t in zip(prompts, targets)],
            images=[r["image"] for r in batch],
            return_tensors="pt",
            padding=True,
        )
        loss = _completion_loss(model, processor.tokenizer, enc, targets)
        _step(model, optimizer, loss, schedule)
        if log is not None and (step % 25 == 0 or step == steps - 1):
            log(f"cold start step {step}: loss {loss.item():.4f}")


def build_tiny_base(
    out_dir: str | os.PathLike, seed: int = BASE_SEED, steps: int | None = None, log=None, pretrain_steps=None
) -> Path:
    """Build the random tiny Qwen2-VL, run the text-only task and the cold start, save model and processor."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from medvlm_trl.data.phantom import STYLES, make_items
    from medvlm_trl.tiny import build_processor, build_tokenizer, greedy_generation_config, qwen2_vl_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(extra_corpus=_phantom_words())
    tokenizer.add_tokens([*TAG_TOKENS, *option_tokens(), *finding_tokens()])
    processor = build_processor(tokenizer, min_pixels=BASE_MIN_PIXELS, max_pixels=BASE_MAX_PIXELS)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(qwen2_vl_config(tokenizer, BASE_TEXT_CONFIG, BASE_VISION_CONFIG))
    _structured_option_embeddings(model, tokenizer)
    tokenizer.padding_side = "right"
    model.train()

    # The other task: text-only option lists, a random option named and its letter answered.
    pre = dict(PRETRAIN, **({"steps": pretrain_steps} if pretrain_steps is not None else {}))
    pre_rng = random.Random(seed + pre["seed"])
    train_text_task(
        model,
        tokenizer,
        lambda: pretrain_example(pre_rng),
        steps=pre["steps"],
        batch_size=pre["batch_size"],
        learning_rate=pre["learning_rate"],
        log=log,
    )

    # The cold start: teacher-forced r1-prompt completions whose finding is a random option.
    settings = dict(COLD_START, **({"steps": steps} if steps is not None else {}))
    per_style = settings["rows"] // len(STYLES)
    rows = [r for style in STYLES for r in make_items("coldstart", style, per_style)]
    rng = random.Random(seed)
    rng.shuffle(rows)
    train_cold_start(
        model,
        processor,
        rows,
        lambda r: cold_start_target(r, rng),
        steps=settings["steps"],
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        warmup_steps=settings["warmup_steps"],
        log=log,
    )
    model.eval()
    tokenizer.padding_side = "left"
    model.generation_config = greedy_generation_config(tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def tiny_base_path() -> Path:
    """Directory of the cached tiny base model (built on first call: the cold start takes a few minutes)."""
    from medvlm_trl.tiny import _cached

    return _cached(f"tiny-base-v{TINY_BASE_VERSION}", build_tiny_base)
