"""Does a cold start that perceives make GRPO learn? Build a tiny base model whose reasoning names the true finding
but whose answer ignores it, then measure perception, look-up and strict accuracy per style, before and after GRPO;
a printed table and a JSON under `bench/results/`.

Why it exists: issue 15 asks GRPO to raise the phantom world's strict accuracy by 30 points in a 3-minute demo. The
tiny base model of `medvlm_trl.tiny_base` (version 2) names a *random* option, so GRPO has to learn perception from
one reward per completion, which `bench/perception_probe.py` shows is too little. This probe tries the other split
of the work: the cold start teaches the perception itself, with the finding given at every step, and keeps the
answer at chance. Its target under MedVLM-R1's r1 prompt, for a phantom row whose lesion is large:

    <think>Finding: large. {a random option}, option {its letter}.</think><answer>{that letter}</answer>

`Finding: large.` is one token per finding word, `{option}, option {letter}` is `medvlm_trl.tiny_base`'s finding
token, and the tokenizer, the structured embeddings and the text-only option task are version 2's, except that the
text task names the same option twice (`Finding: w. w, option L.`, answer `L`): the look-up "which letter stands
before this option text" that GRPO then has to reconnect to the perceived finding. Reported on 150 held-out rows per
style, greedy: `format` (the strict tags), `perception` (the first finding is the image's), `look-up` (the answered
letter is that of the perceived finding's option), `strict` accuracy and the random guess.

    python bench/cold_start_probe.py --lrs 1e-3 3e-3 --seeds 0 1                # the cold start alone
    python bench/cold_start_probe.py --lrs 3e-3 --seeds 1 --grpo-steps 200 --grpo-seeds 42 43

GRPO runs `medvlm-trl grpo` with the demo's recipe (`recipes/tiny/grpo_phantom.yaml`, 4 questions x 8 completions,
the paper's format + accuracy rewards) on a phantom folder of the same question types (`build_phantom(types=...)`),
at `--grpo-lr` (default 3e-4: 1e-3, the recipe's, and 5e-4 collapsed the rollouts onto one completion in the
experiments of issue 15). Measured results: `bench/results/cold_start_probe_cpu-2core_2026-12-02.md`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PERCEIVED = "Finding: {word}."  # one token per finding word
RECIPE = ROOT / "recipes" / "tiny" / "grpo_phantom.yaml"


def target(word: str, option: str, letter: str) -> str:
    return f"<think>{PERCEIVED.format(word=word)} {option}, option {letter}.</think><answer>{letter}</answer>"


def _words() -> list[str]:
    from medvlm_trl.data.phantom import QUESTION_TYPES

    return [w for _, vocab in QUESTION_TYPES.values() for w in vocab]


def _model_and_processor(seed: int):
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from medvlm_trl import tiny_base as tb
    from medvlm_trl.tiny import build_processor, build_tokenizer, qwen2_vl_config

    tokenizer = build_tokenizer(extra_corpus=tb._phantom_words())
    perceived = [PERCEIVED.format(word=w) for w in _words()]
    tokenizer.add_tokens([*tb.TAG_TOKENS, *tb.option_tokens(), *tb.finding_tokens(), *perceived])
    processor = build_processor(tokenizer, min_pixels=tb.BASE_MIN_PIXELS, max_pixels=tb.BASE_MAX_PIXELS)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(qwen2_vl_config(tokenizer, tb.BASE_TEXT_CONFIG, tb.BASE_VISION_CONFIG))
    tb._structured_option_embeddings(model, tokenizer)
    ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in _words()]
    tb.compose_embeddings(model, zip(tokenizer.convert_tokens_to_ids(perceived), ids))  # `Finding: large.` ~ large
    return model, processor


def build(out: Path, *, lr: float, steps: int, pretrain_steps: int, types: tuple[str, ...], seed: int) -> float:
    """Text-only option task, then the perceiving cold start; saves model and processor; returns seconds."""
    from medvlm_trl import tiny_base as tb
    from medvlm_trl.data.phantom import QUESTION_TYPES, STYLES, make_items
    from medvlm_trl.data.prompts import LETTERS, format_options
    from medvlm_trl.tiny import greedy_generation_config

    start = time.perf_counter()
    model, processor = _model_and_processor(seed)
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "right"
    model.train()
    rng = random.Random(seed)

    def example() -> tuple[str, str]:  # the text-only task: one option named twice, its letter answered
        question, vocab = QUESTION_TYPES[rng.choice(sorted(QUESTION_TYPES))]
        options = rng.sample(vocab, rng.randint(2, min(len(vocab), len(LETTERS))))
        i = rng.randrange(len(options))
        return f"{question}\n{format_options(options)}\n", target(options[i], options[i], LETTERS[i])

    def perceiving(row: dict) -> str:  # the image's finding named, then a guessed option answered
        j = rng.randrange(len(row["options"]))
        return target(row["finding"], row["options"][j], LETTERS[j])

    tb.train_text_task(
        model,
        tokenizer,
        example,
        steps=pretrain_steps,
        batch_size=tb.PRETRAIN["batch_size"],
        learning_rate=tb.PRETRAIN["learning_rate"],
    )
    rows = [r for style in STYLES for r in make_items("coldstart", style, 1000, types=types)]
    rng.shuffle(rows)
    warmup, batch_size = tb.COLD_START["warmup_steps"], tb.COLD_START["batch_size"]
    tb.train_cold_start(
        model, processor, rows, perceiving, steps=steps, batch_size=batch_size, learning_rate=lr, warmup_steps=warmup
    )
    model.eval()
    tokenizer.padding_side = "left"
    model.generation_config = greedy_generation_config(tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return time.perf_counter() - start


def measure(model_dir: Path, types: tuple[str, ...], n: int = 150) -> dict:
    """Greedy format, perception, look-up and strict accuracy (%) on `n` held-out test rows per style."""
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from medvlm_trl.data.phantom import STYLES, make_items
    from medvlm_trl.data.prompts import LETTERS, build_prompt
    from medvlm_trl.eval.scoring import random_guess_accuracy
    from medvlm_trl.rewards import parse_completion

    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"
    result = {}
    for style in STYLES:
        rows = make_items("test", style, n, types=types)
        counts = {"format": 0, "perception": 0, "look-up": 0, "strict": 0}
        for i in range(0, n, 50):
            batch = rows[i : i + 50]
            texts = [
                processor.apply_chat_template(
                    build_prompt(r["question"], r["options"], "r1"), tokenize=False, add_generation_prompt=True
                )
                for r in batch
            ]
            enc = processor(text=texts, images=[r["image"] for r in batch], return_tensors="pt", padding=True)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=24)
            completions = processor.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for r, text in zip(batch, completions):
                parsed = parse_completion(text)
                seen = re.search(r"Finding: (.+?)\.", text)
                word = seen.group(1) if seen else None
                answer = (parsed.answer or "").strip()
                counts["format"] += parsed.format_ok
                counts["perception"] += word == r["finding"]
                counts["look-up"] += word in r["options"] and answer == LETTERS[r["options"].index(word)]
                counts["strict"] += answer == r["answer"]
        result[style] = {k: round(100 * v / n, 1) for k, v in counts.items()}
        result[style]["random"] = round(random_guess_accuracy(rows, by=None)["all"], 1)
    return result


def grpo(base: Path, out: Path, data_dir: Path, steps: int, lr: float, seed: int) -> list[tuple[int, float]]:
    """`medvlm-trl grpo` with the demo's recipe from `base` on the probe's phantom folder; (step, accuracy reward)."""
    from medvlm_trl.cli import run

    argv = ["--config", str(RECIPE), "--model_name_or_path", str(base), "--output_dir", str(out)]
    argv += ["--data_dir", str(data_dir), "--max_steps", str(steps), "--learning_rate", str(lr), "--seed", str(seed)]
    if run("grpo", argv + ["--disable_tqdm", "true", "--log_completions", "false"]) != 0:
        raise SystemExit("cold_start_probe: the GRPO run failed")
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [(h["step"], round(h["rewards/accuracy_reward/mean"], 3)) for h in history if "reward" in h]


def _row(name: str, result: dict) -> str:
    cells = [
        f"{s}: {v['format']:.0f} / {v['perception']:.1f} / {v['look-up']:.1f} / {v['strict']:.1f} ({v['random']:.1f})"
        for s, v in result.items()
    ]
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--types", nargs="+", default=["size"], help="phantom question types (default: size)")
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 3e-3], help="cold-start learning rates")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=400, help="cold-start steps (batch 16)")
    parser.add_argument("--pretrain-steps", type=int, default=600, help="text-only option task steps (batch 32)")
    parser.add_argument("--grpo-steps", type=int, default=0, help="then GRPO steps with the demo's recipe (0: none)")
    parser.add_argument("--grpo-lr", type=float, default=3e-4)
    parser.add_argument(
        "--grpo-seeds", nargs="+", type=int, default=[42], help="one GRPO run per seed (42: the recipe's)"
    )
    parser.add_argument("--eval-rows", type=int, default=150, help="held-out test rows per style (a multiple of 50)")
    parser.add_argument("--work", default=None, help="folder for the models (default: a temporary one)")
    parser.add_argument("--out", default=None, help="JSON file for every result (default: print only)")
    args = parser.parse_args(argv)
    import torch

    from medvlm_trl.data.phantom import build_phantom

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    types = tuple(args.types)
    work = Path(args.work or tempfile.mkdtemp(prefix="cold_start_probe-"))
    data_dir = build_phantom(work / "phantom", types=types) if args.grpo_steps else None
    runs = []
    for lr in args.lrs:
        for seed in args.seeds:
            base = work / f"base-lr{lr:g}-seed{seed}"
            seconds = build(base, lr=lr, steps=args.steps, pretrain_steps=args.pretrain_steps, types=types, seed=seed)
            run = {"lr": lr, "seed": seed, "build_s": round(seconds), "base": measure(base, types, args.eval_rows)}
            print(_row(f"base lr {lr:g} seed {seed}", run["base"]), flush=True)
            run["grpo"] = []
            for grpo_seed in args.grpo_seeds if args.grpo_steps else []:
                start, trained = time.perf_counter(), work / f"grpo-{base.name}-seed{grpo_seed}"
                curve = grpo(base, trained, data_dir, args.grpo_steps, args.grpo_lr, grpo_seed)
                after = measure(trained, types, args.eval_rows)
                run["grpo"].append(
                    {
                        "seed": grpo_seed,
                        "seconds": round(time.perf_counter() - start),
                        "accuracy_reward": curve,
                        "after": after,
                    }
                )
                print(_row(f"after GRPO lr {args.grpo_lr:g} seed {grpo_seed}", after), flush=True)
            runs.append(run)
    print(
        f"\nper style: format / perception / look-up / strict accuracy (random guess), %, greedy, {args.eval_rows} rows each\n"
    )
    for run in runs:
        print(_row(f"base, cold-start lr {run['lr']:g}, seed {run['seed']}", run["base"]))
        for g in run["grpo"]:
            print(_row(f"after {args.grpo_steps} GRPO steps (lr {args.grpo_lr:g}, seed {g['seed']})", g["after"]))
    if args.out:
        record = {
            "date": datetime.date.today().isoformat(),
            "types": types,
            "steps": args.steps,
            "pretrain_steps": args.pretrain_steps,
            "grpo_steps": args.grpo_steps,
            "grpo_lr": args.grpo_lr,
            "grpo_seeds": args.grpo_seeds,
            "runs": runs,
        }
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
