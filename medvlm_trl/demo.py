"""`make demo`: the whole MedVLM-R1 loop on the embedded default, on a CPU, in a few minutes.

Steps, each through the same entry point a paper recipe uses (only the recipe differs):

1. the tiny offline Qwen2-VL (`medvlm_trl.tiny`) and the real-image sample set (`medvlm_trl.data.sample`);
2. `medvlm-trl eval` with MedVLM-R1's prompt and strict rule on the sample test split;
3. `medvlm-trl grpo --config recipes/tiny/grpo.yaml` (GRPO, format + accuracy rewards, KL 0.04) for a few dozen steps;
4. `medvlm-trl eval` again on the trained model;
5. a Table-1-shaped result: rows before / after, columns per modality and their average, plus the mean reward.

The model is random: it starts at (almost surely) 0% under the strict rule and a few dozen steps of GRPO on rewards
it never earns leave it there. The demo shows the pipeline and where its files go, not medical skill; the learning
test (`tests/test_learning.py`) is where training is shown to move a reward.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from medvlm_trl.rewards import parse_completion

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "grpo.yaml"


def _eval(model: str, out: Path, max_pixels: int, max_new_tokens: int) -> dict:
    from medvlm_trl.eval.run import SUMMARY
    from medvlm_trl.eval.run import main as eval_main

    argv = ["--model", model, "--split", "sample", "--prompt", "r1", "--out", str(out)]
    argv += ["--max_new_tokens", str(max_new_tokens), "--max_pixels", str(max_pixels), "--overwrite", "true"]
    argv += ["--progress", "false", "--metrics", "token_length"]
    if eval_main(argv) != 0:
        raise SystemExit(f"demo: evaluation into {out} failed")
    return json.loads((out / SUMMARY).read_text())


def _format_rate(out: Path) -> float:
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines() if x.strip()]
    return 100.0 * sum(parse_completion(r["completion"]).format_ok for r in lines) / max(len(lines), 1)


def _reward_curve(grpo_dir: Path) -> list[tuple[int, float]]:
    """(step, mean reward) of every logged step, from the run's trainer_state.json."""
    state = grpo_dir / "trainer_state.json"
    if not state.exists():
        return []
    history = json.loads(state.read_text()).get("log_history", [])
    return [(h["step"], h["reward"]) for h in history if "reward" in h]


def render(before: dict, after: dict, rates: tuple[float, float], rewards: list[tuple[int, float]]) -> str:
    modalities = sorted(set(before["modalities"]) | set(after["modalities"]))
    head = ["", *modalities, "average", "format ok"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label: str, summary: dict, rate: float | None) -> str:
        cells = []
        for m in modalities:
            acc = summary["modalities"].get(m, {}).get("accuracy")
            cells.append("—" if acc is None else f"{acc:.2f}")
        avg = summary.get("average")
        cells.append("—" if avg is None else f"{avg:.2f}")
        cells.append("" if rate is None else f"{rate:.1f}%")
        return f"| {label} | " + " | ".join(cells) + " |"

    lines.append(row("before GRPO", before, rates[0]))
    lines.append(row("after GRPO", after, rates[1]))
    random_cells = [
        f"{before['modalities'][m]['random_guess']:.2f}" if m in before["modalities"] else "—" for m in modalities
    ]
    lines.append("| random guess | " + " | ".join(random_cells) + " | | |")
    text = "\n".join(lines)
    if rewards:
        (first_step, first), (last_step, last) = rewards[0], rewards[-1]
        text += (
            f"\n\nmean GRPO reward (format + accuracy, at most 2.0): {first:.3f} at step {first_step}, "
            f"{last:.3f} at step {last_step}"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl demo [--out runs/demo] [--steps 30]`."""
    from medvlm_trl.data.sample import sample_dir
    from medvlm_trl.grpo import main as grpo_main
    from medvlm_trl.tiny import TINY_MAX_PIXELS, tiny_vlm_path

    parser = argparse.ArgumentParser(prog="medvlm-trl demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo", help="folder for every file of the demo run")
    parser.add_argument("--steps", type=int, default=30, help="GRPO steps")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="completion length at evaluation")
    args = parser.parse_args(argv)
    if not RECIPE.exists():
        print(f"demo: recipe {RECIPE} not found; run the demo from a checkout of the repository", file=sys.stderr)
        return 2

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)  # the demo folder is the demo's own: each run replaces the previous one
    model = str(tiny_vlm_path())
    print(f"[1/5] tiny offline Qwen2-VL: {model}\n      sample set: {sample_dir()}")
    print("[2/5] strict evaluation before training")
    before = _eval(model, out / "eval_before", TINY_MAX_PIXELS, args.max_new_tokens)
    print(f"[3/5] GRPO, {args.steps} steps, recipe {RECIPE.relative_to(RECIPE.parents[2])}")
    grpo_dir = out / "grpo"
    code = grpo_main(
        ["--config", str(RECIPE), "--model_name_or_path", model, "--output_dir", str(grpo_dir)]
        + ["--max_steps", str(args.steps), "--log_completions", "false", "--logging_steps", "5"]
    )
    if code != 0:
        return code
    print("[4/5] strict evaluation after training")
    after = _eval(str(grpo_dir), out / "eval_after", TINY_MAX_PIXELS, args.max_new_tokens)
    rates = (_format_rate(out / "eval_before"), _format_rate(out / "eval_after"))
    table = render(before, after, rates, _reward_curve(grpo_dir))
    (out / "table.md").write_text(table + "\n")
    print("[5/5] accuracy (%) under MedVLM-R1's strict rule, sample test split\n")
    print(table)
    print(
        f"\nfiles: {out}/eval_before, {out}/grpo (model, processor, model card, trainer_state.json), "
        f"{out}/eval_after, {out}/table.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
