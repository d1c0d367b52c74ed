"""`medvlm-trl reproduce-table1 --paper medvlm_r1|rl_medvqa --profile full|tiny`: every row of a paper's Table 1.

For each row of the paper's table (the rows, in order, of `medvlm_trl/resources/paper_results.json`, plus any other
recipe in the paper's folder) it trains the row if the row trains, evaluates it, and then renders the table with
`medvlm-trl table`. One YAML recipe per row, in `recipes/<paper>/<row>.yaml`; the file name says what runs it:

| file name    | command              | recipe keys                                                          |
|--------------|----------------------|----------------------------------------------------------------------|
| `zero_shot_*`| `medvlm-trl eval`    | `kind: eval` plus `medvlm-trl eval` arguments (`model`, `prompt`, ...) |
| `sft_*`      | `medvlm-trl sft`     | `BaselineScriptArguments`, TRL's `SFTConfig`, `ModelConfig`           |
| `dpo_*`      | `medvlm-trl dpo`     | `DPOScriptArguments`, TRL's `DPOConfig`, `ModelConfig`                |
| `grpo_*`, `dr_grpo_*` | `medvlm-trl grpo` | `MedVLMScriptArguments`, `MedVLMGRPOConfig`, `ModelConfig`     |

`recipes/<paper>/protocol.yaml` (`kind: protocol`) is how the paper tests every row: the test split and the
`medvlm-trl eval` settings all rows share, and the accelerate config training rows are launched with. A trained row
is evaluated from its output folder with the prompt it was trained with. MedVLM-R1's random-guess row is computed by
the table from the test rows, never run.

Outputs, under `--output-dir` (default `runs/<paper>/<profile>`): `recipes/<row>.yaml` (the recipe as run, after the
profile's overrides), `models/<row>/` (trained model, processor, model card with the test results), `results/<row>/`
(`medvlm-trl eval`'s predictions and summary) and `table1_<paper>.md|csv|png`. Re-running skips every row whose
results exist (a row whose training was cut off resumes from its last whole checkpoint); `--force` redoes them. A
row that fails is reported and reads `missing` in the table; nothing is filled in for it.

Profiles:

- `full`: the recipes as written: hub models, the papers' data and splits (`medvlm-trl make-split` first), bf16,
  vLLM. Each step runs in its own process (so every row starts with the GPU memory free), training under
  `accelerate launch --config_file recipes/accelerate/<protocol's accelerate_config>`.
- `tiny`: every row in the phantom world (`medvlm_trl.data.phantom`), on a CPU: the paper's recipe of each row with
  the override sets of `recipes/tiny/profile.yaml` (`TINY_TRAIN_OVERRIDES`, `TINY_COMMAND_OVERRIDES`,
  `TINY_EVAL_OVERRIDES`): the model becomes the tiny base model (`medvlm_trl.tiny_base`, which writes the r1 format
  and answers near chance), training reads the 600 MRI-style training phantoms with tiny-world step counts and
  learning rates, the semantic judge becomes the tiny causal LM, and every row is tested on the 900 phantom test
  questions (300 MRI in domain, 300 CT and 300 X-ray out of domain). What each row stands for: every model of the
  papers (2B to 72B, base or instruct, HuatuoGPT-Vision, LLaVA, Llama) becomes the one tiny base model, the only
  pretrained-like model of the phantom world; so the zero-shot rows are the tiny base model with the row's prompt
  (rows with the same prompt measure the same thing and are run once, the others copy its results), and the
  trained rows are the tiny base trained by the row's method (the study's base and instruct GRPO rows differ only
  where their recipes do). Its table says at its top that these are phantom-world numbers. `--max-steps N` and
  `--limit N` make a quicker run (fewer training steps, the first N test rows, marked `†` in the table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PAPERS = ("medvlm_r1", "rl_medvqa")
PROFILES = ("full", "tiny")
PROTOCOL_FILE = "protocol.yaml"
# Which command runs a recipe, from its file name (longest prefix first).
COMMAND_PREFIXES = (("zero_shot_", "eval"), ("dr_grpo_", "grpo"), ("grpo_", "grpo"), ("sft_", "sft"), ("dpo_", "dpo"))
TRAIN_COMMANDS = ("sft", "dpo", "grpo")
# Protocol keys that are not `medvlm-trl eval` arguments.
PROTOCOL_KEYS = {"kind", "accelerate_config"}
# Eval arguments that belong to the paper's protocol (the same test rows for every row) or to this runner.
PROTOCOL_ONLY_EVAL_KEYS = {"split", "dataset", "data_dir", "out", "overwrite"}


class ReproduceError(ValueError):
    """A recipe folder, recipe or protocol that cannot describe a table row."""


class _WhenSet:
    """An override applied only where the recipe sets the key (e.g. a judge model only for rows that use one)."""

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return f"when set: {self.value!r}"


class _Tiny:
    """A `tiny:NAME` value of the tiny profile, resolved only when the profile is used (building a tiny model takes
    seconds, the tiny base model minutes the first time): `base` (the tiny base model's folder, `medvlm_trl.tiny_base`),
    `vlm` / `lm` (the random tiny Qwen2-VL / causal LM's folder, `medvlm_trl.tiny`), `base_pixels` (the phantom world's
    image bound, 112 x 112 pixels)."""

    NAMES = ("base", "vlm", "lm", "base_pixels")

    def __init__(self, which: str):
        if which not in self.NAMES:
            raise ReproduceError(f"tiny:{which}: unknown tiny value; choose one of {['tiny:' + n for n in self.NAMES]}")
        self.which = which

    def resolve(self, family: str = "qwen2_vl") -> Any:
        """The value for a recipe of `family` (`medvlm_trl.tiny_families`): the phantom world's tiny base model is a
        Qwen2-VL, so a recipe of another family gets that family's random tiny model (and its grid's 4 x 4 image
        tokens) instead."""
        from medvlm_trl import tiny, tiny_base
        from medvlm_trl.tiny_families import spec, tiny_family_path

        qwen2_vl = family == "qwen2_vl"
        values = {
            "base": lambda: str(tiny_base.tiny_base_path() if qwen2_vl else tiny_family_path(family)),
            "vlm": lambda: str(tiny.tiny_vlm_path() if qwen2_vl else tiny_family_path(family)),
            "lm": lambda: str(tiny.tiny_causal_lm_path()),
            "base_pixels": lambda: tiny_base.BASE_MAX_PIXELS if qwen2_vl else 16 * spec(family).factor ** 2,
        }
        return values[self.which]()

    def __repr__(self) -> str:
        return f"<tiny {self.which}>"


TINY_PROFILE_FILE = Path("tiny") / "profile.yaml"
TINY_PROFILE_SECTIONS = ("train", *TRAIN_COMMANDS, "eval")


def _profile_value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("tiny:"):
        return _Tiny(value.split(":", 1)[1])
    return value


def load_tiny_profile(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """`recipes/tiny/profile.yaml`: `kind: profile` and one override set per section (`train`, `grpo`, `sft`, `dpo`,
    `eval`); `tiny:NAME` values become `_Tiny`, the keys of a section's `when_set` become `_WhenSet` overrides. Which
    keys a command knows is checked when a plan applies them."""
    data = load_yaml(path)
    if data.get("kind") != "profile":
        raise ReproduceError(f"{path}: expected `kind: profile`, got {data.get('kind')!r}")
    unknown = sorted(set(data) - {"kind", *TINY_PROFILE_SECTIONS})
    if unknown:
        raise ReproduceError(f"{path}: unknown section(s) {unknown}; sections: {list(TINY_PROFILE_SECTIONS)}")
    profile: dict[str, dict[str, Any]] = {}
    for section in TINY_PROFILE_SECTIONS:
        body = dict(data.get(section) or {})
        when_set = body.pop("when_set", None) or {}
        overrides = {k: _profile_value(v) for k, v in body.items()}
        overrides.update({k: _WhenSet(_profile_value(v)) for k, v in when_set.items()})
        profile[section] = overrides
    return profile


# ---------------------------------------------------------------------------------------------------------------------
# Recipes


def recipes_root() -> Path:
    """`recipes/` of the source tree (an editable install), else of the working directory."""
    here = Path(__file__).resolve().parents[1] / "recipes"
    return here if here.is_dir() else Path.cwd() / "recipes"


def command_for(path: str | os.PathLike) -> str:
    """The command that runs a recipe, from its file name (see the module docstring)."""
    name = Path(path).name
    for prefix, command in COMMAND_PREFIXES:
        if name.startswith(prefix):
            return command
    raise ReproduceError(
        f"{name}: a recipe's name must start with one of {[p for p, _ in COMMAND_PREFIXES]} (it says what runs it)"
    )


def load_yaml(path: str | os.PathLike) -> dict:
    with open(path) as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ReproduceError(f"{path}: a recipe must be a YAML mapping of keys to values")
    return data


# The tiny profile's overrides, from recipes/tiny/profile.yaml (hyper-parameters live in recipes/): those of every
# training recipe, those of one training command (applied after them), and those of every evaluation. Each applies
# where the recipe's dataclasses know the key (so `num_generations` touches GRPO recipes only); None resets a key.
_TINY_PROFILE = load_tiny_profile(recipes_root() / TINY_PROFILE_FILE)
TINY_TRAIN_OVERRIDES: dict[str, Any] = _TINY_PROFILE["train"]
TINY_COMMAND_OVERRIDES: dict[str, dict[str, Any]] = {c: _TINY_PROFILE[c] for c in TRAIN_COMMANDS}
TINY_EVAL_OVERRIDES: dict[str, Any] = _TINY_PROFILE["eval"]
TINY_BANNER = (
    "> **Tiny profile: phantom-world numbers.** Every row above was trained (if it trains) and tested in the phantom "
    "world of `medvlm_trl.data.phantom` (procedurally drawn MRI-, CT- and X-ray-style images, training on the MRI "
    "style only), starting from the tiny base model (`medvlm_trl.tiny_base`) that stands in for every model of the "
    "paper, with the settings of `recipes/tiny/profile.yaml`. Each number measures that row's method on that world, "
    "not the paper's models; they sit beside the paper's values for the shape of the comparison only. Run "
    "`make reproduce-table1 PROFILE=full` for the real table.\n\n"
)


def make_parser(command: str):
    """The TrlParser of a training command, exactly as its `main` builds it."""
    if command == "grpo":
        from medvlm_trl.grpo import make_parser as grpo_parser

        return grpo_parser()
    if command == "sft":
        from medvlm_trl.sft import make_parser as sft_parser

        return sft_parser()
    if command == "dpo":
        from medvlm_trl.dpo import make_dpo_parser

        return make_dpo_parser()
    raise ReproduceError(f"{command!r} is not a training command ({TRAIN_COMMANDS})")


def training_keys(command: str) -> set[str]:
    from medvlm_trl.grpo import recipe_keys

    return recipe_keys(make_parser(command))


def eval_keys() -> set[str]:
    from medvlm_trl.eval.run import EvalArguments

    return {f.name for f in dataclasses.fields(EvalArguments)}


def _unknown(keys, known: set[str], where: str) -> None:
    from medvlm_trl.grpo import unknown_keys

    unknown = unknown_keys(keys, known)
    if unknown:
        raise ReproduceError(f"{where}: unknown key(s) {', '.join(unknown)}")


def load_protocol(paper_dir: str | os.PathLike) -> dict:
    """`protocol.yaml`: `kind: protocol`, `medvlm-trl eval` arguments shared by every row, and `accelerate_config`."""
    path = Path(paper_dir) / PROTOCOL_FILE
    if not path.is_file():
        raise ReproduceError(f"{path}: missing; it says how every row of the table is tested")
    data = load_yaml(path)
    if data.get("kind") != "protocol":
        raise ReproduceError(f"{path}: expected `kind: protocol`, got {data.get('kind')!r}")
    _unknown(data, eval_keys() - {"model", "prompt", "out"} | PROTOCOL_KEYS, str(path))
    if "split" not in data:
        raise ReproduceError(f"{path}: `split` (the test split every row is scored on) is required")
    return data


def eval_settings(protocol: dict) -> dict:
    return {k: v for k, v in protocol.items() if k not in PROTOCOL_KEYS}


def load_eval_recipe(path: str | os.PathLike, protocol: dict) -> dict:
    """A zero-shot row: `kind: eval`, `model`, `prompt` and any `medvlm-trl eval` argument except the test split's."""
    data = load_yaml(path)
    if data.get("kind") != "eval":
        raise ReproduceError(f"{path}: a zero-shot recipe starts with `kind: eval`, got {data.get('kind')!r}")
    body = {k: v for k, v in data.items() if k != "kind"}
    _unknown(body, eval_keys() - PROTOCOL_ONLY_EVAL_KEYS, str(path))
    for key in ("model", "prompt"):
        if key not in body:
            raise ReproduceError(f"{path}: `{key}` is required")
    return body


def check_eval_arguments(settings: dict, where: str):
    """Build `EvalArguments` from merged settings: its own checks name the bad value."""
    from medvlm_trl.eval.run import EvalArguments

    try:
        return EvalArguments(**settings)
    except (TypeError, ValueError) as err:
        raise ReproduceError(f"{where}: {err}") from err


def parse_training_recipe(path: str | os.PathLike, command: str | None = None, overrides: Sequence[str] = ()):
    """Parse a training recipe exactly as its command would (unknown keys refused); returns the dataclasses."""
    from medvlm_trl.grpo import RecipeError, check_recipe

    command = command or command_for(path)
    parser = make_parser(command)
    argv = ["--config", str(path), *overrides]
    try:
        check_recipe(argv, parser)
        return parser.parse_args_and_config(argv, fail_with_unknown_args=True)
    except RecipeError as err:
        raise ReproduceError(str(err)) from err


# ---------------------------------------------------------------------------------------------------------------------
# Rows and profiles


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
    from medvlm_trl.run_safety import last_complete_checkpoint, looks_like_run_dir

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


# ---------------------------------------------------------------------------------------------------------------------
# Running


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


def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl reproduce-table1 --paper PAPER --profile full|tiny [--output-dir DIR] [--rows a,b] [--force]`."""
    parser = argparse.ArgumentParser(prog="medvlm-trl reproduce-table1", description=__doc__.split("\n\n")[0])
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
    try:
        plan = make_plan(
            args.paper, args.profile, args.output_dir, args.recipes_dir, only, args.force, args.max_steps, args.limit
        )
    except (ReproduceError, OSError, ValueError) as err:
        print(f"medvlm-trl reproduce-table1: {err}", file=sys.stderr)
        return 2
    print(f"{args.paper} Table 1, profile {args.profile}, into {plan.root}:")
    for step in plan.steps:
        state = f"skip ({step.skip})" if step.skip else f"copy of {step.same_as}" if step.same_as else "run"
        print(f"  [{state}] {command_line(step, args.profile)}")
    for note in plan.notes:
        print(f"  [computed] {note}")
    if args.profile == "full":
        missing = missing_inputs(plan)
        if missing:
            print(
                "medvlm-trl reproduce-table1: missing split files (write them with `medvlm-trl make-split "
                f"{'medvlm-r1' if args.paper == 'medvlm_r1' else 'pmc-vqa'}` first):\n  " + "\n  ".join(missing),
                file=sys.stderr,
            )
            return 2
    if args.dry_run:
        return 0
    if args.profile == "full" and not _has_gpu():
        print(
            "medvlm-trl reproduce-table1: the full profile trains and tests 2B-72B models in bf16 with vLLM and needs "
            "GPUs; on a CPU run --profile tiny (or --dry-run to check the recipes)",
            file=sys.stderr,
        )
        return 2
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
