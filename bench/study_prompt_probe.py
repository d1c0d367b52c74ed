"""Why do the study's GRPO rows end at the guess in the tiny profile? Adapt the tiny base model to the study's prompt
(and to the simple prompt), measure it greedy and sampled under each prompt, then run the study's GRPO row of the
tiny profile from it; a printed table and a JSON under `bench/results/`.

Why it exists: in the tiny profile MedVLM-R1's GRPO row learns (r1 prompt, 60 steps: MRI 39.00 -> 80.33), but all six
of the study's GRPO rows end at exactly 41.67, the guess (README, "Reproducing Table 1"). The study's rows differ
from MedVLM-R1's only in the prompt: its instruction sentence and its option rendering `A:small , B:large` where r1
has one `A) small` line per option. The tiny base model (`medvlm_trl.tiny_base`) learned the r1 prompt only. This
probe asks whether a base model taught the study's prompt lets the study's GRPO learn.

Each variant starts from the tiny base model, adds the study's options as tokens of their own (`A:small`, each a copy
of the base's `A) small` embeddings) and runs a cold start of `--steps` steps (batch 16, `--lr`, 10 warm-up steps,
linear decay) on the base's cold-start rows, the three prompts `r1`, `study`, `simple` taking turns row by row: under
`r1` and `study` the base's own target (`medvlm_trl.tiny_base.cold_start_target`: the image's finding, then a random
option and its letter), under `simple` the bare random letter; the choice scored against the uniform distribution
over the row's options (`_uniform_choice_loss`). The text task in the study's rendering: 32 option lists without an
image, whose completion names one option and answers its letter (the base's text task, `pretrain_example`);
`--pretrain-steps N` runs N of its steps first (constant `--lr`), `--lookup` one between every two image steps.

Measured per prompt, greedy, on `--eval-rows` MRI test rows: the strict tags (`format`; the bare letter under
`simple`), `perception` (the reasoning's finding is the image's), strict accuracy and the guess; and the mean
accuracy reward of 4 completions sampled at temperature 1 (GRPO's rollouts) on 64 training rows, under `r1` and
`study`. `--grpo-steps N ...` then runs the study's `grpo_qwen2vl_2b_instruct` row of `make reproduce-table1
PROFILE=tiny` (or the `--rows` given) from the variant (`medvlm_trl.reproduce`, `--max-steps N`) and records its
accuracy on the 900 test phantoms. The adaptation runs on one thread (the same model on every machine); the
measures and the GRPO rows run in this process on `--threads` (the tiny profile runs its rows in its own process, on
torch's default), and the GRPO trajectory depends on it.

    python bench/study_prompt_probe.py --steps 150 --lr 1e-3 --grpo-steps 60
    python bench/study_prompt_probe.py --steps 200 --lr 1e-3 --lookup --grpo-steps 60 150

Measured: `bench/results/study_prompt_probe_cpu-2core_2026-12-03.md`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TEMPLATES = ("r1", "study", "simple")
STUDY_OPTION_TOKEN = "{letter}:{word}"


def adapt(
    base: Path, out: Path, *, steps: int, lr: float, lookup: bool, pretrain_steps: int = 0, seed: int = 0
) -> float:
    """The variant of the module docstring, saved into `out`; returns seconds."""
    import torch

    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the base's build: the same model on every machine
    try:
        _adapt(base, out, steps=steps, lr=lr, lookup=lookup, pretrain_steps=pretrain_steps, seed=seed)
    finally:
        torch.set_num_threads(threads)
    return time.perf_counter() - start


def _adapt(base: Path, out: Path, *, steps: int, lr: float, lookup: bool, pretrain_steps: int, seed: int) -> None:
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from medvlm_trl import tiny_base as tb
    from medvlm_trl.data.phantom import STYLES, make_items

    processor = AutoProcessor.from_pretrained(base)
    model = Qwen2VLForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    tok = processor.tokenizer
    tok.add_tokens([t for t, _, _ in tb._tokens(STUDY_OPTION_TOKEN)])
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    tb.compose_embeddings(
        model,
        [
            (tok.convert_tokens_to_ids(t), [tok.convert_tokens_to_ids(tb.OPTION_TOKEN.format(letter=L, word=w))])
            for t, L, w in tb._tokens(STUDY_OPTION_TOKEN)
        ],
    )
    torch.manual_seed(seed)
    rng = random.Random(seed)
    per_style = tb.COLD_START["rows"] // len(STYLES)
    rows = [r for style in STYLES for r in make_items("coldstart", style, per_style)]
    rng.shuffle(rows)
    tok.padding_side = "right"
    model.train()
    if pretrain_steps:
        tb.train_text_task(
            model, tok, lambda: _study_text_example(rng), steps=pretrain_steps, batch_size=32, learning_rate=lr
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / steps))
    batch_size = 16
    target = lambda r, t: tb.cold_start_target(r, rng, t)  # noqa: E731
    for step in range(steps):
        if lookup and step % 2 == 1:
            pairs = [_study_text_example(rng) for _ in range(32)]
            targets = [t + tb.EOS for _, t in pairs]
            enc = tok([p + t for (p, _), t in zip(pairs, targets)], return_tensors="pt", padding=True)
            tb._step(model, optimizer, tb._completion_loss(model, tok, enc, targets), schedule)
            continue
        batch = [rows[(step * batch_size + j) % len(rows)] for j in range(batch_size)]
        kinds = [TEMPLATES[(step * batch_size + j) % len(TEMPLATES)] for j in range(batch_size)]
        loss = tb.cold_start_loss(model, processor, batch, kinds, target, uniform_choice=True)
        tb._step(model, optimizer, loss, schedule)
    model.eval()
    tok.padding_side = "left"
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _study_text_example(rng: random.Random) -> tuple[str, str]:
    """The base's text task (`pretrain_example`) with the study's option rendering."""
    from medvlm_trl import tiny_base as tb
    from medvlm_trl.data.phantom import DEFAULT_TYPES, QUESTION_TYPES
    from medvlm_trl.data.prompts import LETTERS, format_study_options

    question, vocab = QUESTION_TYPES[DEFAULT_TYPES[0]]
    i = rng.randrange(len(vocab))
    options = rng.sample(vocab, rng.randint(max(2, i + 1), len(vocab)))
    target = tb.THINK_TEMPLATE.format(finding=options[i], option=options[i], letter=LETTERS[i])
    return f"{question} {format_study_options(options)}\n", target


def measure(model_dir: Path, n: int) -> dict:
    """Greedy format / perception / strict / guess (%) per prompt on `n` MRI test rows; sampled accuracy reward."""
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from medvlm_trl.data.phantom import make_items
    from medvlm_trl.data.prompts import build_prompt
    from medvlm_trl.eval.scoring import random_guess_accuracy
    from medvlm_trl.rewards import accuracy_reward, parse_completion

    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"

    def generate(rows, template, **kwargs):
        texts = [
            processor.apply_chat_template(
                build_prompt(r["question"], r["options"], template), tokenize=False, add_generation_prompt=True
            )
            for r in rows
        ]
        enc = processor(text=texts, images=[r["image"] for r in rows], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=24, **kwargs)
        return processor.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)

    test = make_items("test", "MRI", n)
    result = {"random": round(random_guess_accuracy(test, by=None)["all"], 1)}
    for template in TEMPLATES:
        counts = {"format": 0, "perception": 0, "strict": 0}
        for i in range(0, n, 50):
            for r, text in zip(test[i : i + 50], generate(test[i : i + 50], template)):
                if template == "simple":
                    answer, ok, word = text.strip(), text.strip() in "ABCDEF" and len(text.strip()) == 1, None
                else:
                    parsed = parse_completion(text)
                    seen = re.search(r"Finding: (.+?)\.", text)
                    answer, ok, word = (parsed.answer or "").strip(), parsed.format_ok, seen and seen.group(1)
                counts["format"] += ok
                counts["perception"] += word == r["finding"]
                counts["strict"] += answer == r["answer"]
        result[template] = {k: round(100 * v / n, 1) for k, v in counts.items()}
    train = make_items("train", "MRI", 64)
    for template in ("r1", "study"):
        torch.manual_seed(0)
        texts = generate(train, template, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, num_return_sequences=4)
        rewards = accuracy_reward(
            [[{"role": "assistant", "content": t}] for t in texts],
            answer=[r["answer"] for r in train for _ in range(4)],
            options=[r["options"] for r in train for _ in range(4)],
        )
        result[template]["sampled reward"] = round(sum(rewards) / len(rewards), 3)
    return result


def grpo_row(model_dir: Path, work: Path, steps: int, paper_row: str) -> dict:
    """A GRPO row (`paper/row`, e.g. the study's `rl_medvqa/grpo_qwen2vl_2b_instruct`) of the tiny profile from
    `model_dir`, `--max-steps steps`: its accuracy (%) per style and over the 900 test phantoms, and the seconds it
    took."""
    from medvlm_trl import tiny_base
    from medvlm_trl.reproduce.runner import main as reproduce

    paper, row = paper_row.split("/")
    out = work / f"{paper}-{steps}"
    original = tiny_base.tiny_base_path
    tiny_base.tiny_base_path = lambda: model_dir  # the profile's `tiny:base`, resolved in this process
    start = time.perf_counter()
    try:
        argv = ["--paper", paper, "--profile", "tiny", "--output-dir", str(out), "--rows", row]
        if reproduce([*argv, "--max-steps", str(steps), "--force"]) != 0:
            raise SystemExit(f"study_prompt_probe: the {row} row failed")
    finally:
        tiny_base.tiny_base_path = original
    summary = json.loads((out / "results" / row / "summary.json").read_text())
    accuracy = {m: round(v["accuracy"], 2) for m, v in summary["modalities"].items()}
    accuracy["overall"] = round(summary["overall"]["accuracy"], 2)
    return {"row": paper_row, "steps": steps, "seconds": round(time.perf_counter() - start), "accuracy": accuracy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=150, help="adaptation steps (0: measure the base model itself)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lookup", action="store_true", help="a text-only study-rendering step between image steps")
    parser.add_argument(
        "--pretrain-steps", type=int, default=0, help="text-only study-rendering steps before the cold start (lr --lr)"
    )
    parser.add_argument("--eval-rows", type=int, default=150)
    parser.add_argument("--grpo-steps", type=int, nargs="*", default=[])
    parser.add_argument(
        "--rows",
        nargs="+",
        default=["rl_medvqa/grpo_qwen2vl_2b_instruct"],
        help="GRPO rows to run (paper/row; MedVLM-R1's is medvlm_r1/grpo_qwen2vl_2b)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for the measures and the GRPO rows, which run in this process (default: torch's)",
    )
    parser.add_argument("--work", default=None, help="folder for the models and runs (default: a temporary one)")
    parser.add_argument("--out", default=None, help="write the record here (JSON)")
    args = parser.parse_args(argv)

    import torch

    from medvlm_trl.tiny_base import TINY_BASE_VERSION, tiny_base_path

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="study-prompt-probe-"))
    base = tiny_base_path()
    name = f"base v{TINY_BASE_VERSION}" + (
        (f" + {args.pretrain_steps} text-only study steps" if args.pretrain_steps else "")
        + (f" + {args.steps} steps lr {args.lr:g}" + (" + look-up" if args.lookup else "") if args.steps else "")
    )
    model, seconds = base, 0.0
    if args.steps:
        model = work / "model"
        seconds = adapt(
            base, model, steps=args.steps, lr=args.lr, lookup=args.lookup, pretrain_steps=args.pretrain_steps
        )
    record = {
        "date": datetime.date.today().isoformat(),
        "variant": name,
        "adapt_seconds": round(seconds),
        "threads": torch.get_num_threads(),
        "measure": measure(model, args.eval_rows),
        "grpo": [grpo_row(model, work, s, r) for r in args.rows for s in args.grpo_steps],
    }
    m = record["measure"]
    print(
        f"{name} (adapted in {seconds:.0f} s, one thread; measured on {torch.get_num_threads()}); greedy on {args.eval_rows} MRI test rows, guess {m['random']}"
    )
    print("| prompt | format | perception | strict | sampled accuracy reward |")
    print("|---|---:|---:|---:|---:|")
    for t in TEMPLATES:
        print(
            f"| {t} | {m[t]['format']} | {m[t]['perception']} | {m[t]['strict']} | {m[t].get('sampled reward', '-')} |"
        )
    for g in record["grpo"]:
        print(f"{g['row']}, {g['steps']} steps ({g['seconds']} s, train and eval): {g['accuracy']}")
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
