"""Running a Table 1 plan (`medvlm_trl.reproduce`): each step through its command, the results recorded in the model
cards, the table rendered; and `medvlm-trl reproduce-table1` itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medvlm_trl.cli import error_boundary
from medvlm_trl.errors import ReproduceError, wrapped_errors
from medvlm_trl.recipe import OneLineArgumentParser
from medvlm_trl.reproduce.plan import Plan, Step, _eval_done, _has_gpu, _training_state, make_plan, missing_inputs
from medvlm_trl.reproduce.recipes import PAPERS, PROFILES, TINY_BANNER, load_yaml


def _run_in_process(argv: list[str]) -> int:
    """The tiny profile: one Python process for every step (imports once; the models are small)."""
    from medvlm_trl import cli

    saved = sys.argv
    try:
        return cli.main(argv)
    finally:
        sys.argv = saved


def step_command(step: Step) -> list[str]:
    """The full profile's process for a step: training under `accelerate launch`, evaluation in a plain Python."""
    if step.kind == "train" and step.launcher:
        return [*step.launcher, "-m", "medvlm_trl.cli", *step.argv]
    return [sys.executable, "-m", "medvlm_trl.cli", *step.argv]


def command_line(step: Step, profile: str) -> str:
    """The step as a person would type it."""
    if profile == "full" and step.kind == "train" and step.launcher:
        return " ".join(["accelerate", "launch", *step_command(step)[3:]])
    return " ".join(["medvlm-trl", *step.argv])


def _record_results(plan: Plan, row: str) -> None:
    """Copy a trained row's test accuracies into its model card."""
    from medvlm_trl.model_card import add_results

    model_dir = plan.root / "models" / row
    summary_path = plan.root / "results" / row / "summary.json"
    if not (model_dir / "README.md").is_file() or not summary_path.is_file():
        return
    summary = json.loads(summary_path.read_text())
    results = {name: group["accuracy"] for name, group in summary.get("modalities", {}).items()}
    results["overall"] = summary.get("overall", {}).get("accuracy")
    if summary.get("average") is not None:
        results["average of modalities"] = summary["average"]
    config = summary.get("config", {})
    limited = (
        f", the first of {summary.get('split_rows')} (--limit)"
        if summary.get("limit") and not summary.get("complete")
        else ""
    )
    note = (
        f"Accuracy (%) from `medvlm-trl eval` on `{config.get('split')}` ({summary.get('rows')} questions{limited}), "
        f"prompt `{config.get('prompt')}`, {config.get('scoring')} scoring; Table 1 of {plan.paper}, profile "
        f"{plan.profile}."
    )
    add_results(model_dir, results, note=note, paper=plan.paper)


@dataclass
class Outcome:
    row: str
    kind: str
    status: str  # "ran", "skipped", "copied", "failed", "blocked"
    detail: str = ""
    seconds: float = 0.0


def run_plan(plan: Plan, in_process: bool | None = None) -> list[Outcome]:
    """Run the plan's steps in order; a failed training blocks its row's evaluation, other rows go on."""
    in_process = plan.profile == "tiny" if in_process is None else in_process
    outcomes: list[Outcome] = []
    failed_rows: set[str] = set()
    for step in plan.steps:
        if step.row in failed_rows:
            outcomes.append(Outcome(step.row, step.kind, "blocked", "its training failed"))
            continue
        if step.skip:
            outcomes.append(Outcome(step.row, step.kind, "skipped", step.skip))
            if step.kind == "eval":
                _record_results(plan, step.row)
            continue
        if step.same_as is not None and step.same_as not in failed_rows:
            # The same model, prompt and test rows as an earlier row (the tiny profile's zero-shot rows): its results.
            import shutil

            source = plan.root / "results" / step.same_as
            if step.out.exists():
                shutil.rmtree(step.out)
            shutil.copytree(source, step.out)
            outcomes.append(Outcome(step.row, step.kind, "copied", f"the same eval as {step.same_as}"))
            continue
        print(f"\n=== {plan.paper} / {step.row}: {step.kind} ===\n{command_line(step, plan.profile)}", flush=True)
        start = time.monotonic()
        detail = ""
        try:
            code = _run_in_process(step.argv) if in_process else subprocess.call(step_command(step))
        except Exception as err:  # one row's crash must not stop the others, and must be reported
            traceback.print_exc()
            code, detail = 1, f"{type(err).__name__}: {err}"
        if code == 0 and step.kind == "train" and _training_state(step.out)[0] != "done":
            # Every training command ends by writing the model card; it is also what marks a row as trained.
            code, detail = 1, f"no model and model card in {step.out} after training"
        if code == 0 and step.kind == "eval" and not _eval_done(step.out, load_yaml(step.config).get("limit")):
            code, detail = 1, "the evaluation did not cover every test question"
        elapsed = time.monotonic() - start
        if code != 0:
            failed_rows.add(step.row)
            outcomes.append(Outcome(step.row, step.kind, "failed", detail or f"exit status {code}", elapsed))
            continue
        outcomes.append(Outcome(step.row, step.kind, "ran", "", elapsed))
        if step.kind == "eval":
            _record_results(plan, step.row)
    return outcomes


def render_table(plan: Plan) -> dict[str, Path]:
    """`medvlm-trl table` over the results folder; the tiny profile's Markdown says at its top what it is."""
    from medvlm_trl.eval.table import write_table

    results = plan.root / "results"
    results.mkdir(parents=True, exist_ok=True)
    paths = write_table(plan.paper, results, plan.root)
    if plan.profile == "tiny":
        paths["markdown"].write_text(TINY_BANNER + paths["markdown"].read_text())
    return paths


def format_outcomes(outcomes: Sequence[Outcome]) -> str:
    lines = [f"{'row':<40} {'step':<6} {'status':<8} {'time':>7}  detail"]
    for o in outcomes:
        lines.append(f"{o.row:<40} {o.kind:<6} {o.status:<8} {o.seconds:>6.0f}s  {o.detail}")
    return "\n".join(lines)


@error_boundary("reproduce-table1")
def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl reproduce-table1 --paper PAPER --profile full|tiny [--output-dir DIR] [--rows a,b] [--force]`."""
    parser = OneLineArgumentParser(prog="medvlm-trl reproduce-table1", description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper", choices=PAPERS, required=True)
    parser.add_argument("--profile", choices=PROFILES, default="full")
    parser.add_argument("--output-dir", default=None, help="default: runs/<paper>/<profile>")
    parser.add_argument("--recipes-dir", default=None, help="default: the recipes/ folder of this source tree")
    parser.add_argument("--rows", default=None, help="comma-separated row keys to run (default: every row)")
    parser.add_argument("--force", action="store_true", help="redo rows whose results exist")
    parser.add_argument("--dry-run", action="store_true", help="validate every recipe and print the plan only")
    parser.add_argument("--max-steps", type=int, default=None, help="tiny profile: train every row this many steps")
    parser.add_argument("--limit", type=int, default=None, help="tiny profile: test on the first N test rows (†)")
    args = parser.parse_args(argv)
    only = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else None
    with wrapped_errors(ReproduceError):
        plan = make_plan(
            args.paper, args.profile, args.output_dir, args.recipes_dir, only, args.force, args.max_steps, args.limit
        )
    print(f"{args.paper} Table 1, profile {args.profile}, into {plan.root}:")
    for step in plan.steps:
        state = f"skip ({step.skip})" if step.skip else f"copy of {step.same_as}" if step.same_as else "run"
        print(f"  [{state}] {command_line(step, args.profile)}")
    for note in plan.notes:
        print(f"  [computed] {note}")
    if args.profile == "full":
        missing = missing_inputs(plan)
        if missing:
            raise ReproduceError(
                "missing split files (write them with `medvlm-trl make-split "
                f"{'medvlm-r1' if args.paper == 'medvlm_r1' else 'pmc-vqa'}` first):\n  " + "\n  ".join(missing)
            )
    if args.dry_run:
        return 0
    if args.profile == "full" and not _has_gpu():
        raise ReproduceError(
            "the full profile trains and tests 2B-72B models in bf16 with vLLM and needs "
            "GPUs; on a CPU run --profile tiny (or --dry-run to check the recipes)"
        )
    outcomes = run_plan(plan)
    paths = render_table(plan)
    print("\n" + paths["markdown"].read_text())
    print(format_outcomes(outcomes))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    failed = [o for o in outcomes if o.status in {"failed", "blocked"}]
    if failed:
        print(f"{len(failed)} step(s) failed; their rows read 'missing' in the table", file=sys.stderr)
        return 1
    return 0
