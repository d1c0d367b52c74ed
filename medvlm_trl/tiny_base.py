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
   Version 3 adds one token per finding the reasoning says it saw (`Finding: large.`, starting as " large");
2. *another task* first (`PRETRAIN`): text-only option lists without an image, whose completion names one option as
   the finding, chooses that same option and answers its letter (`Finding: large. large, option B.` ... `B`): the
   look-up "which letter stands before this option", learned in short sequences within a few hundred steps. Every
   letter is the answer equally often (`pretrain_example`);
3. a *perception warm-up* (`PERCEPTION`) on phantom questions drawn from a seed range of their own
   (`split="coldstart"`, disjoint from the training and test rows) under MedVLM-R1's r1 prompt, whose target is only
   the start of a completion: `<think>Finding: {the image's finding}.`;
4. a supervised *cold start* (`COLD_START`) on the same rows, whose target names the image's finding and then
   chooses an option **at random**, answering its letter:

       <think>Finding: large. {a random option}, option {its letter}.</think><answer>{its letter}</answer>

   with the choice token scored against the uniform distribution over the row's options (`uniform_choice`), so the
   base model reads the image, but its answer does not follow from what it read: right about 1 / (number of options)
   of the time. What GRPO has to learn is the link, choosing the option it saw.

Version 4 (2026-12-02) changed two things of version 3, each measured (`bench/results/answer_breakdown_*`):

- version 3's text task drew the option count first, so with 2 or 3 options C was the answer of a sixth of its
  targets; its base and its trained models never answered C on a three-option question (the "C wall": a sixth of
  the test set answered wrong whatever the image showed). Drawing the letter first makes the look-up exact for every
  letter;
- version 3's cold start sampled one option as the target's choice, and the base leaned towards the option it saw
  (51.3% against a random guess of 41.7%). The uniform choice puts the base at chance.

Version 5 (2026-12-03) keeps version 4's stages and changes the seed and the cold start's length, chosen from a scan
of base seeds (`bench/results/cold_start_probe_cpu-2core_2026-12-03.md`; greedy, 150 held-out rows per style). The
perception is seed-fragile: of version 4's builds with seeds 0 to 3 (400 cold-start steps) the warm-up made the
reasoning name the image's finding on 99.3% of MRI rows for seed 2, on 61.7% for seed 0 (version 4's base; 300 rows)
and on 12.0% and 38.0% for seeds 1 and 3 (a model that reads nothing names the right one of three words about a
third of the time). From seed 2's 400-step base the demo's GRPO taught little (MRI 41.3 -> 53.0%): the uniform
choice had erased the link from the finding to the option so thoroughly that 80 steps did not rebuild it. A shorter
cold start leaves a trace of the text task's link: 100 steps put the base above chance (54.0% against 41.3%), **200
steps** at it (47.3%; 39.0% on the 300 MRI test rows against a guess of 41.7%), and from there the demo's GRPO
reaches MRI 83.0% in 100 steps (`make demo`: 39.0 -> 83.0%). `BASE_SEED` 2 with 200 cold-start steps is version 5:
its reasoning names the image's finding on 96.7% of the 300 MRI test rows. The build runs on one CPU thread so that
every machine takes the same trajectory, and `tests/models/test_tiny_base.py` fails loudly if the cached build does
not perceive.

The registered phantom set asks the lesion-size question only (`medvlm_trl.data.phantom.DEFAULT_TYPES`); the build
trains on that.

`tiny_base_path()` builds it once (about 4 minutes on a 2-core machine) and caches it under `MEDVLM_TRL_CACHE` like
`medvlm_trl.tiny`; `make setup` builds it, and `medvlm-trl make-tiny-model OUT --base` saves a copy. Same seed, same
files.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from medvlm_trl.tiny import IMAGE_PATCH, MERGE_SIZE

TINY_BASE_VERSION = "5"
BASE_SEED = 2
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
PRETRAIN = {"steps": 600, "batch_size": 32, "learning_rate": 3e-3}
PERCEPTION = {"steps": 150, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 20}
COLD_START = {
    "rows": 3000,
    "steps": 200,
    "batch_size": 16,
    "learning_rate": 3e-3,
    "warmup_steps": 20,
    "uniform_choice": True,
}
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
EOS = "<|im_end|>"  # ends every teacher-forced completion
PERCEIVED_TOKEN = "Finding: {word}."  # what the reasoning saw, one token per phantom word
THINK_TEMPLATE = "<think>Finding: {finding}. {option}, option {letter}.</think><answer>{letter}</answer>"
CHOICE_INDEX = 3  # the `{option}, option {letter}` token is the 4th of a target: <think>, Finding: w., Ġ, choice


def cold_start_target(row: dict, rng: random.Random, template: str = "r1") -> str:
    """The cold start's completion for one row: the image's finding, then a random option named and its letter
    answered (the choice ignores the finding, so the answer is right 1 / (number of options) of the time). Under the
    `simple` prompt (bench/study_prompt_probe.py) the completion is only that random letter, as the prompt asks."""
    from medvlm_trl.data.prompts import LETTERS

    i = rng.randrange(len(row["options"]))
    if template == "simple":
        return LETTERS[i]
    return THINK_TEMPLATE.format(finding=row["finding"], option=row["options"][i], letter=LETTERS[i])


def perception_target(row: dict) -> str:
    """The perception warm-up's completion for one row: the start of the think block and the image's finding."""
    return "<think>" + PERCEIVED_TOKEN.format(word=row["finding"])


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
    """Every option choice the reasoning names as one token: `small, option A`, ..., `6, option F`."""
    return [token for token, _, _ in _tokens(FINDING_TOKEN)]


def perceived_tokens() -> list[str]:
    """Every finding the reasoning says it saw, as one token: `Finding: small.`, ..., `Finding: 6.`."""
    return [PERCEIVED_TOKEN.format(word=w) for w in _words()]


def pretrain_example(rng: random.Random, types: tuple[str, ...] | None = None) -> tuple[str, str]:
    """One example of the text-only task before the cold start: a question and its option lines (no image, no
    instructions) and a completion that names one of them as the finding and then chooses that same option and
    answers its letter: the look-up "which letter stands before this option text".

    The letter is drawn first, uniformly over every letter the type's options can reach, and the number of options
    then from those that reach it, so every letter is the answer equally often (version 3 drew the option count
    first: with 2 or 3 options C was a sixth of the answers, and the trained model never answered it)."""
    from medvlm_trl.data.phantom import QUESTION_TYPES
    from medvlm_trl.data.prompts import LETTERS, format_options

    question, vocab = QUESTION_TYPES[rng.choice(sorted(types or QUESTION_TYPES))]
    most = min(len(vocab), len(LETTERS))
    i = rng.randrange(most)
    options = rng.sample(vocab, rng.randint(max(2, i + 1), most))
    target = THINK_TEMPLATE.format(finding=options[i], option=options[i], letter=LETTERS[i])
    return f"{question}\n{format_options(options)}\n", target


def _structured_option_embeddings(model, tokenizer) -> None:
    """Each option and finding token starts as (its letter's vector + its text's vectors), in the input and output
    embeddings, so that `B) large` and `large, option D` share the direction of "large" and `B) large` and
    `small, option B` that of B; each `Finding: large.` starts as " large"."""
    compose_embeddings(
        model,
        [
            (
                tokenizer.convert_tokens_to_ids(token),
                tokenizer(letter)["input_ids"] + _word_ids(tokenizer, word),
            )
            for token, letter, word in _tokens(OPTION_TOKEN) + _tokens(FINDING_TOKEN)
        ]
        + [
            (tokenizer.convert_tokens_to_ids(PERCEIVED_TOKEN.format(word=word)), _word_ids(tokenizer, word))
            for word in _words()
        ],
    )


def _word_ids(tokenizer, word: str) -> list[int]:
    return tokenizer(" " + word, add_special_tokens=False)["input_ids"]


def compose_embeddings(model, pieces) -> None:
    """For each `(token id, part ids)`: the token's input and output embeddings become the sum of its parts' divided
    by the square root of their number (a new token starts in the direction of the words it stands for)."""
    import torch

    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    with torch.no_grad():
        for tid, parts in pieces:
            emb[tid] = emb[parts].sum(0) / len(parts) ** 0.5
            head[tid] = head[parts].sum(0) / len(parts) ** 0.5


# The tokenizer's training corpus is version 2's, so that its byte-level merges are too (the reasoning's own spellings
# are added tokens since then).
_CORPUS_LINE = "<think>Finding: {finding}, option {letter}.</think><answer>{letter}</answer>"


def _phantom_words() -> list[str]:
    from medvlm_trl.data.phantom import QUESTION_TYPES
    from medvlm_trl.data.prompts import LETTERS, format_options

    lines = []
    for question, vocab in QUESTION_TYPES.values():
        lines.append(f"Case 100001. {question}")
        lines += [_CORPUS_LINE.format(finding=v, letter=L) for v, L in zip(vocab, LETTERS)]
        lines.append(format_options(vocab))
    return lines


def _completion_loss(model, tokenizer, enc, targets: list[str]):
    """Teacher-forced loss on the completions only (right padding: each completion ends its sequence)."""
    labels = enc["input_ids"].clone()
    for j, (start, _) in enumerate(_completion_spans(tokenizer, enc, targets)):
        labels[j, :start] = -100
    labels[enc["attention_mask"] == 0] = -100
    return model(**enc, labels=labels).loss


def _completion_spans(tokenizer, enc, targets: list[str]) -> list[tuple[int, int]]:
    """`(start, end)` of each row's completion in the right-padded batch `enc` (each completion ends its sequence)."""
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    return [(end - len(tokenizer(t)["input_ids"]), end) for t, end in zip(targets, lengths)]


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


def _uniform_choice_loss(model, tokenizer, enc, targets: list[str], rows: list[dict], templates: list[str]):
    """The completion loss of `_completion_loss`, except that the choice token is scored by its cross-entropy against
    the uniform distribution over the row's choices: the exact "no option preferred" target instead of one sampled
    option, so no trace of the text task's look-up survives in the base's choice. The choice is the reasoning's
    `{option}, option {letter}` token (`CHOICE_INDEX`), or under the `simple` prompt the bare letter (the first)."""
    import torch

    logits = model(**enc).logits.float()
    total, count = logits.new_zeros(()), 0
    for j, ((start, end), row, template) in enumerate(zip(_completion_spans(tokenizer, enc, targets), rows, templates)):
        logp = torch.log_softmax(logits[j, start - 1 : end - 1], dim=-1)
        token_logp = logp.gather(1, enc["input_ids"][j, start:end, None])[:, 0]
        at, choices = _choices(tokenizer, row, template)
        if int(enc["input_ids"][j, start + at]) not in choices:  # the target and its choice list must agree
            raise ValueError(f"cold start row {row.get('id')}: token {at} of {targets[j]!r} is not one of its choices")
        token_logp = torch.cat([token_logp[:at], logp[at, choices].mean()[None], token_logp[at + 1 :]])
        total, count = total - token_logp.sum(), count + end - start
    return total / count


def _choices(tokenizer, row: dict, template: str) -> tuple[int, list[int]]:
    """(index in the completion, token ids) of a row's choice under `template` (see `_uniform_choice_loss`)."""
    from medvlm_trl.data.prompts import LETTERS

    letters = LETTERS[: len(row["options"])]
    if template == "simple":
        return 0, tokenizer.convert_tokens_to_ids(list(letters))
    tokens = [FINDING_TOKEN.format(word=o, letter=L) for o, L in zip(row["options"], letters)]
    return CHOICE_INDEX, tokenizer.convert_tokens_to_ids(tokens)


def cold_start_loss(model, processor, batch, kinds, target, *, end: str = EOS, uniform_choice: bool = False):
    """The loss of one cold-start batch: each row of `batch` under its prompt template of `kinds`, its completion
    `target(row, template)` followed by `end`; with `uniform_choice` the choice token scored against the uniform
    distribution over the row's options (`_uniform_choice_loss`)."""
    from medvlm_trl.data.prompts import build_prompt

    prompts = [
        processor.apply_chat_template(
            build_prompt(r["question"], r["options"], t), tokenize=False, add_generation_prompt=True
        )
        for r, t in zip(batch, kinds)
    ]
    targets = [target(r, t) + end for r, t in zip(batch, kinds)]
    enc = processor(
        text=[p + t for p, t in zip(prompts, targets)],
        images=[r["image"] for r in batch],
        return_tensors="pt",
        padding=True,
    )
    if uniform_choice:
        return _uniform_choice_loss(model, processor.tokenizer, enc, targets, batch, kinds)
    return _completion_loss(model, processor.tokenizer, enc, targets)


def train_cold_start(
    model,
    processor,
    rows,
    target,
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    warmup_steps: int,
    end: str = EOS,
    uniform_choice: bool = False,
    templates: tuple[str, ...] = ("r1",),
    log=None,
):
    """`steps` teacher-forced AdamW steps on phantom `rows` (cycled in order), the prompt templates `templates`
    cycled over them (MedVLM-R1's r1 prompt by default), the completion of each row `target(row, template)` followed
    by `end` (EOS; "" for a target that is only the start of a completion); linear warm-up over `warmup_steps`, then
    linear decay to 0. `uniform_choice`: the choice token is scored against the uniform distribution over the row's
    options (`_uniform_choice_loss`)."""
    import torch

    if steps == 0:
        return
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup_steps) * max(0.0, 1 - s / steps)
    )
    for step in range(steps):
        batch = [rows[(step * batch_size + j) % len(rows)] for j in range(batch_size)]
        kinds = [templates[(step * batch_size + j) % len(templates)] for j in range(batch_size)]
        loss = cold_start_loss(model, processor, batch, kinds, target, end=end, uniform_choice=uniform_choice)
        _step(model, optimizer, loss, schedule)
        if log is not None and (step % 25 == 0 or step == steps - 1):
            log(f"cold start step {step}: loss {loss.item():.4f}")


def build_tiny_base(
    out_dir: str | os.PathLike,
    seed: int = BASE_SEED,
    steps: int | None = None,
    log=None,
    pretrain_steps: int | None = None,
    perception_steps: int | None = None,
    learning_rate: float | None = None,
    types: tuple[str, ...] | None = None,
) -> Path:
    """Build the random tiny Qwen2-VL, run the text-only task, the perception warm-up and the cold start, save model
    and processor. `steps`, `pretrain_steps` and `perception_steps` change a stage's length (tests shorten them;
    `perception_steps=0` skips the warm-up), `learning_rate` the cold start's, `types` the phantom question types
    (default: the registered set's), for `bench/cold_start_probe.py`. The build runs on one
    CPU thread whatever the machine, so that every machine computes the same sums in the same order and builds the
    same model (whether the perception clicks depends on the exact trajectory)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(Path(out_dir), seed, steps, log, pretrain_steps, perception_steps, learning_rate, types)
    finally:
        torch.set_num_threads(threads)


def _stage(settings: dict, steps: int | None) -> dict:
    """A stage's settings, with its number of steps changed unless `steps` is None."""
    return dict(settings, **({} if steps is None else {"steps": steps}))


def _build(out: Path, seed: int, steps, log, pretrain_steps, perception_steps, learning_rate, types) -> Path:
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from medvlm_trl.data.phantom import DEFAULT_TYPES, STYLES, make_items
    from medvlm_trl.tiny import build_processor, build_tokenizer, greedy_generation_config, qwen2_vl_config

    types = tuple(types or DEFAULT_TYPES)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(extra_corpus=_phantom_words())
    tokenizer.add_tokens([*TAG_TOKENS, *option_tokens(), *finding_tokens(), *perceived_tokens()])
    processor = build_processor(tokenizer, min_pixels=BASE_MIN_PIXELS, max_pixels=BASE_MAX_PIXELS)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(qwen2_vl_config(tokenizer, BASE_TEXT_CONFIG, BASE_VISION_CONFIG))
    _structured_option_embeddings(model, tokenizer)
    tokenizer.padding_side = "right"
    model.train()

    # The other task: text-only option lists; the finding named is chosen again and its letter answered.
    pre = _stage(PRETRAIN, pretrain_steps)
    rng = random.Random(seed)  # one stream for the text task, the row order and the cold start's choices
    train_text_task(
        model,
        tokenizer,
        lambda: pretrain_example(rng, types),
        steps=pre["steps"],
        batch_size=pre["batch_size"],
        learning_rate=pre["learning_rate"],
        log=log,
    )

    per_style = COLD_START["rows"] // len(STYLES)
    rows = [r for style in STYLES for r in make_items("coldstart", style, per_style, types=types)]
    rng.shuffle(rows)
    # The perception warm-up: the r1-prompt completion starts with the image's finding, nothing after it.
    warm = _stage(PERCEPTION, perception_steps)
    train_cold_start(
        model,
        processor,
        rows,
        lambda r, _template: perception_target(r),
        steps=warm["steps"],
        batch_size=warm["batch_size"],
        learning_rate=warm["learning_rate"],
        warmup_steps=warm["warmup_steps"],
        end="",
        log=log,
    )
    # The cold start: the image's finding, then a random option chosen (it ignores the finding), its letter.
    settings = _stage(COLD_START, steps)
    settings["learning_rate"] = learning_rate or settings["learning_rate"]
    train_cold_start(
        model,
        processor,
        rows,
        lambda r, template: cold_start_target(r, rng, template),
        steps=settings["steps"],
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        warmup_steps=settings["warmup_steps"],
        uniform_choice=settings["uniform_choice"],
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
