"""The plan of a Table 1 run (`medvlm_trl.reproduce`): the paper's rows, each one's training and evaluation steps with
their recipes written out (the tiny profile's overrides applied), and which steps are done already.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medvlm_trl.errors import ReproduceError
from medvlm_trl.reproduce.recipes import (
    PAPERS,
    PROFILES,
    PROTOCOL_FILE,
    TINY_COMMAND_OVERRIDES,
    TINY_EVAL_OVERRIDES,
    TINY_PROFILE_FILE,
    TINY_TRAIN_OVERRIDES,
    TRAIN_COMMANDS,
    _Tiny,
    _unknown,
    _WhenSet,
    check_eval_arguments,
    command_for,
    eval_keys,
    eval_settings,
    load_eval_recipe,
    load_protocol,
    load_yaml,
    make_parser,
    parse_training_recipe,
    recipes_root,
    training_keys,
)


@dataclass
class Row:
    """One row of a paper's Table 1."""

    key: str
    label: str
    command: str  # eval / sft / dpo / grpo, or "computed"
    recipe: Path | None = None
    computed: str | None = None


def table_rows(paper: str, recipes_dir: str | os.PathLike | None = None) -> list[Row]:
    """The paper's rows in the table's order, then any other recipe of its folder (sorted)."""
    from medvlm_trl.eval.table import load_paper_results

    if paper not in PAPERS:
        raise ReproduceError(f"unknown paper {paper!r}; choose one of {list(PAPERS)}")
    folder = Path(recipes_dir or recipes_root()) / paper
    if not folder.is_dir():
        raise ReproduceError(f"recipe folder not found: {folder}")
    files = {p.stem: p for p in sorted(folder.glob("*.yaml")) if p.name != PROTOCOL_FILE}
    rows = []
    for spec in load_paper_results()[paper]["rows"]:
        key = spec["key"]
        if spec.get("computed"):
            rows.append(Row(key, spec["label"], "computed", computed=spec["computed"]))
        elif key in files:
            rows.append(Row(key, spec["label"], command_for(files.pop(key)), recipe=folder / f"{key}.yaml"))
        else:
            raise ReproduceError(f"the {paper} table has a row {key!r} but {folder} has no {key}.yaml")
    rows += [Row(key, key, command_for(path), recipe=path) for key, path in sorted(files.items())]
    return rows


def apply_overrides(recipe: dict, overrides: dict, known: set[str], family: str = "qwen2_vl") -> dict:
    """`recipe` with each override whose key `known` holds (a `_WhenSet` one only where the recipe sets it); the tiny
    model is `family`'s (`medvlm_trl.tiny_families`: a recipe of `recipes/<paper>/<family>/` runs on its family's)."""
    out = dict(recipe)
    for key, value in overrides.items():
        if key not in known:
            continue
        if isinstance(value, _WhenSet):
            if out.get(key) is None:
                continue
            value = value.value
        out[key] = value.resolve(family) if isinstance(value, _Tiny) else value
    return out


def check_tiny_profile() -> None:
    """Refuse a key of `recipes/tiny/profile.yaml` that no command of its section knows (a typo would else be dropped
    silently, since an override applies only where a recipe's dataclasses know the key)."""
    where = str(TINY_PROFILE_FILE)
    known = {c: training_keys(c) for c in TRAIN_COMMANDS}
    _unknown(TINY_TRAIN_OVERRIDES, set().union(*known.values()), f"{where} [train]")
    for command, overrides in TINY_COMMAND_OVERRIDES.items():
        _unknown(overrides, known[command], f"{where} [{command}]")
    _unknown(TINY_EVAL_OVERRIDES, eval_keys(), f"{where} [eval]")


def _prompt_of(command: str, recipe: dict) -> str:
    """The prompt a trained row is tested with: the one it was trained with (each command's default otherwise)."""
    if "prompt_template" in recipe:
        return recipe["prompt_template"]
    parser = make_parser(command)
    for dc in parser.dataclass_types:
        for f in dataclasses.fields(dc):
            if f.name == "prompt_template":
                return f.default
    raise ReproduceError(f"cannot tell which prompt a {command} row is tested with")


@dataclass
class Step:
    """One command of the plan: its argv (after `medvlm-trl`), whether it is done already, and where it writes."""

    row: str
    kind: str  # "train" or "eval"
    argv: list[str]
    config: Path
    out: Path
    launcher: list[str] = field(default_factory=list)
    skip: str | None = None  # why it need not run
    same_as: str | None = None  # an eval: the earlier row whose eval settings are the same (its results are copied)


@dataclass
class Plan:
    paper: str
    profile: str
    root: Path
    rows: list[Row]
    steps: list[Step]
    notes: list[str]


def _write_yaml(path: Path, data: dict, header: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return path


def _training_state(model_dir: Path) -> tuple[str, dict]:
    """ "done" (model + our card), "resume" (a whole checkpoint), "restart" (a run cut short before one) or "new"."""
    from medvlm_trl.model_card import read_model_card
    from medvlm_trl.runs.checkpoints import last_complete_checkpoint
    from medvlm_trl.runs.output_dir import looks_like_run_dir

    if (model_dir / "config.json").is_file():
        try:
            read_model_card(model_dir)
            return "done", {}
        except (OSError, ValueError):
            pass
    checkpoint = last_complete_checkpoint(model_dir) if model_dir.is_dir() else None
    if checkpoint is not None:
        return "resume", {"resume_from_checkpoint": str(checkpoint)}
    if looks_like_run_dir(model_dir):
        return "restart", {"overwrite_output_dir": True}
    return "new", {}


def _trained_otherwise(model_dir: Path, run: dict) -> bool:
    """Whether the model card of a finished row records other steps, learning rate or base model than the recipe
    now asks for (so a short `--max-steps` run never stands in for the profile's full one)."""
    from medvlm_trl.model_card import read_model_card

    card = read_model_card(model_dir)
    recorded = card.get("hyperparameters") or {}
    for key in ("max_steps", "learning_rate"):
        if key in recorded and key in run and recorded[key] != run[key]:
            return True
    return card.get("base_model") not in (None, run.get("model_name_or_path"))


def _eval_done(out: Path, limit: int | None = None) -> bool:
    """Whether `out` holds the eval a step asks for: a complete one (every test row), or, for a step that is itself
    limited to the first `limit` rows (the tiny profile), a finished eval with that same limit. A limited eval left in
    the folder (`medvlm-trl eval --limit`) never stands in for a full one."""
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(summary, dict):
        return False
    if summary.get("complete") is True:
        return True
    return limit is not None and summary.get("limit") == limit and summary.get("finished") is True


def make_plan(
    paper: str,
    profile: str,
    output_dir: str | os.PathLike | None = None,
    recipes_dir: str | os.PathLike | None = None,
    only: Sequence[str] | None = None,
    force: bool = False,
    max_steps: int | None = None,
    limit: int | None = None,
) -> Plan:
    """Validate every recipe of the paper, apply the profile, write the recipes as run, and list the steps.
    `max_steps` / `limit` (tiny profile only) shorten every training row / test every row on the first test rows."""
    if profile not in PROFILES:
        raise ReproduceError(f"unknown profile {profile!r}; choose one of {list(PROFILES)}")
    if profile != "tiny" and (max_steps is not None or limit is not None):
        raise ReproduceError("--max-steps and --limit shorten the tiny profile only")
    for name, value in (("max-steps", max_steps), ("limit", limit)):
        if value is not None and value < 1:
            raise ReproduceError(f"--{name} must be positive, got {value}")
    recipes_dir = Path(recipes_dir or recipes_root())
    rows = table_rows(paper, recipes_dir)
    if only:
        unknown = sorted(set(only) - {r.key for r in rows})
        if unknown:
            raise ReproduceError(f"no row(s) {unknown} in the {paper} table; rows: {[r.key for r in rows]}")
        rows = [r for r in rows if r.key in set(only)]
    root = Path(output_dir) if output_dir is not None else Path("runs") / paper / profile
    protocol = load_protocol(recipes_dir / paper)
    base_eval = eval_settings(protocol)
    launcher: list[str] = []
    if profile == "tiny":
        check_tiny_profile()
    if profile == "full":
        accelerate_config = recipes_dir / "accelerate" / protocol.get("accelerate_config", "single_gpu.yaml")
        if not accelerate_config.is_file():
            raise ReproduceError(
                f"{recipes_dir / paper / PROTOCOL_FILE}: accelerate config {accelerate_config} not found"
            )
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config)]
    steps: list[Step] = []
    notes: list[str] = []
    evals_seen: dict[str, str] = {}  # eval settings (but the output folder) -> the first row evaluated with them
    for row in rows:
        if row.command == "computed":
            notes.append(f"{row.key}: computed by the table from the test rows ({row.computed}), not run")
            continue
        header = f"# {row.recipe} as run by `medvlm-trl reproduce-table1 --paper {paper} --profile {profile}`\n"
        if profile == "tiny":
            header += "# with the tiny profile's overrides (medvlm_trl.reproduce.TINY_*_OVERRIDES)\n"
        results = root / "results" / row.key
        trained_now = False
        if row.command == "eval":
            recipe = load_eval_recipe(row.recipe, protocol)
            settings = {**base_eval, **recipe}
            if profile == "tiny":
                settings = apply_overrides(settings, TINY_EVAL_OVERRIDES, eval_keys())
        else:
            recipe = load_yaml(row.recipe)
            parse_training_recipe(row.recipe, row.command, _cpu_overrides(recipe))  # refuse a bad recipe up front
            model_dir = root / "models" / row.key
            run = {**recipe, "output_dir": str(model_dir)}
            if profile == "tiny":
                keys = training_keys(row.command)
                run = apply_overrides(run, TINY_TRAIN_OVERRIDES, keys)
                run = apply_overrides(run, TINY_COMMAND_OVERRIDES[row.command], keys)
                if max_steps is not None:
                    run["max_steps"] = max_steps
            # run_safety refuses a non-empty output_dir unless told to resume or overwrite it.
            state, extra = ("forced", {"overwrite_output_dir": True}) if force else _training_state(model_dir)
            if state == "done" and _trained_otherwise(model_dir, run):
                state, extra = "retrain", {"overwrite_output_dir": True}  # e.g. a --max-steps run before a full one
            run.update({k: v for k, v in extra.items() if k in training_keys(row.command)})
            config = _write_yaml(root / "recipes" / f"{row.key}.yaml", run, header)
            skip = "trained already" if state == "done" else None
            trained_now = skip is None
            steps.append(
                Step(row.key, "train", [row.command, "--config", str(config)], config, model_dir, launcher, skip)
            )
            settings = {**base_eval, "model": str(model_dir), "prompt": _prompt_of(row.command, run)}
            if profile == "tiny":
                tiny = {k: v for k, v in TINY_EVAL_OVERRIDES.items() if k != "model"}
                settings = apply_overrides(settings, tiny, eval_keys())
        if profile == "tiny" and limit is not None:
            settings["limit"] = limit
        same = json.dumps(settings, sort_keys=True, default=str)
        same_as = evals_seen.setdefault(same, row.key) if row.command == "eval" else None
        same_as = None if same_as == row.key else same_as
        settings["out"] = str(results)
        if force or trained_now:
            settings["overwrite"] = True  # predictions of an older model must not be resumed
        check_eval_arguments(settings, str(row.recipe))
        config = _write_yaml(root / "eval" / f"{row.key}.yaml", settings, header)
        done = _eval_done(results, settings.get("limit"))
        skip = "evaluated already" if done and not settings.get("overwrite") else None
        steps.append(Step(row.key, "eval", ["eval", "--config", str(config)], config, results, [], skip, same_as))
    return Plan(paper, profile, root, rows, steps, notes)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _cpu_overrides(recipe: dict) -> list[str]:
    """`--bf16 false` when no GPU is visible: TrainingArguments refuses bf16 on a CPU-only machine even to parse."""
    return [] if not recipe.get("bf16") or _has_gpu() else ["--bf16", "false"]


def missing_inputs(plan: Plan) -> list[str]:
    """Split files and manifests the plan's steps read that do not exist (full profile: run make-split first)."""
    missing = []
    for step in plan.steps:
        data = load_yaml(step.config)
        paths = [data.get("split_file"), *(data.get("test_manifests") or [])]
        split = data.get("split") if step.kind == "eval" else None
        if split and (split.endswith((".json", ".jsonl")) or os.sep in split):
            paths.append(split)
        missing += [f"{step.row}: {p}" for p in paths if p and not Path(p).exists()]
    return list(dict.fromkeys(missing))  # a row's training and eval steps may read the same file: list it once
