"""Does a cold start that perceives make GRPO learn? Build tiny base models whose reasoning names the true finding
but whose answer ignores it (the design of `medvlm_trl.tiny_base`, whichever version it is), at several cold-start learning rates,
seeds and perception warm-ups, then measure perception, look-up and strict accuracy per style, before and after GRPO;
a printed table and a JSON under `bench/results/`.

Why it exists: issue 15 asks GRPO to raise the phantom world's strict accuracy by 30 points in a 3-minute demo, which
needs a base model that reads the image but does not yet connect what it read to the answer. The base's target
under MedVLM-R1's r1 prompt, for a phantom row whose lesion is large:

    <think>Finding: large. {a random option}, option {its letter}.</think><answer>{that letter}</answer>

`medvlm_trl.tiny_base` has the stages (the text-only look-up task, the perception warm-up, the cold start); this
script varies them. Reported on `--eval-rows` held-out rows per style, greedy: `format` (the strict tags),
`perception` (the first finding is the image's), `look-up` (the answered letter is that of the perceived finding's
option), `strict` accuracy and the random guess.

    python bench/cold_start_probe.py --lrs 3e-3 --seeds 0 1 2 3                  # the base builds alone
    python bench/cold_start_probe.py --perception-steps 0 --seeds 0 1            # without the perception warm-up
    python bench/cold_start_probe.py --seeds 0 --grpo-steps 80 --grpo-seeds 42 43

GRPO runs `medvlm-trl grpo` with the demo's recipe (`recipes/tiny/grpo_phantom.yaml`, the paper's format + accuracy
rewards) on a phantom folder of the same question types (`build_phantom(types=...)`), at `--grpo-lr` (default: the
recipe's). Measured results: `bench/results/cold_start_probe_cpu-2core_2026-12-02.md` (its first table was made
with this script's version 2 design, without the warm-up, at commit 0336028; the rest with version 3's) and
`..._2026-12-03.md` (version 4's design over base seeds and cold-start lengths: how version 5 was chosen).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECIPE = ROOT / "recipes" / "tiny" / "grpo_phantom.yaml"


def build(out: Path, *, lr: float, steps: int, pretrain_steps: int, perception_steps: int, types, seed: int) -> float:
    """`medvlm_trl.tiny_base.build_tiny_base` with the probe's settings; returns seconds."""
    from medvlm_trl.tiny_base import build_tiny_base

    start = time.perf_counter()
    build_tiny_base(
        out,
        seed=seed,
        steps=steps,
        pretrain_steps=pretrain_steps,
        perception_steps=perception_steps,
        learning_rate=lr,
        types=types,
    )
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


def _recipe_learning_rate() -> float:
    import yaml

    return float(yaml.safe_load(RECIPE.read_text())["learning_rate"])


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
    from medvlm_trl import tiny_base as tb

    parser.add_argument("--types", nargs="+", default=["size"], help="phantom question types (default: size)")
    parser.add_argument(
        "--lrs", nargs="+", type=float, default=[tb.COLD_START["learning_rate"]], help="cold-start learning rates"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=tb.COLD_START["steps"], help="cold-start steps (batch 16)")
    parser.add_argument(
        "--pretrain-steps", type=int, default=tb.PRETRAIN["steps"], help="text-only option task steps (batch 32)"
    )
    parser.add_argument(
        "--perception-steps", type=int, default=tb.PERCEPTION["steps"], help="perception warm-up steps (0: none)"
    )
    parser.add_argument("--grpo-steps", type=int, default=0, help="then GRPO steps with the demo's recipe (0: none)")
    parser.add_argument("--grpo-lr", type=float, default=None, help="GRPO learning rate (default: the recipe's)")
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
    grpo_lr = args.grpo_lr or _recipe_learning_rate()
    work = Path(args.work or tempfile.mkdtemp(prefix="cold_start_probe-"))
    data_dir = build_phantom(work / "phantom", types=types) if args.grpo_steps else None
    runs = []
    for lr in args.lrs:
        for seed in args.seeds:
            base = work / f"base-lr{lr:g}-seed{seed}"
            seconds = build(
                base,
                lr=lr,
                steps=args.steps,
                pretrain_steps=args.pretrain_steps,
                perception_steps=args.perception_steps,
                types=types,
                seed=seed,
            )
            run = {"lr": lr, "seed": seed, "build_s": round(seconds), "base": measure(base, types, args.eval_rows)}
            print(_row(f"base lr {lr:g} seed {seed}", run["base"]), flush=True)
            run["grpo"] = []
            for grpo_seed in args.grpo_seeds if args.grpo_steps else []:
                start, trained = time.perf_counter(), work / f"grpo-{base.name}-seed{grpo_seed}"
                curve = grpo(base, trained, data_dir, args.grpo_steps, grpo_lr, grpo_seed)
                after = measure(trained, types, args.eval_rows)
                run["grpo"].append(
                    {
                        "seed": grpo_seed,
                        "seconds": round(time.perf_counter() - start),
                        "accuracy_reward": curve,
                        "after": after,
                    }
                )
                print(_row(f"after GRPO lr {grpo_lr:g} seed {grpo_seed}", after), flush=True)
            runs.append(run)
    print(
        f"\nper style: format / perception / look-up / strict accuracy (random guess), %, greedy, {args.eval_rows} rows each\n"
    )
    for run in runs:
        print(_row(f"base, cold-start lr {run['lr']:g}, seed {run['seed']}", run["base"]))
        for g in run["grpo"]:
            print(_row(f"after {args.grpo_steps} GRPO steps (lr {grpo_lr:g}, seed {g['seed']})", g["after"]))
    if args.out:
        record = {
            "date": datetime.date.today().isoformat(),
            "types": types,
            "steps": args.steps,
            "pretrain_steps": args.pretrain_steps,
            "perception_steps": args.perception_steps,
            "grpo_steps": args.grpo_steps,
            "grpo_lr": grpo_lr,
            "grpo_seeds": args.grpo_seeds,
            "runs": runs,
        }
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
