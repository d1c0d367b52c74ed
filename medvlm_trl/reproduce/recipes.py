"""The recipes of a paper's Table 1, read and checked as their commands would (`medvlm_trl.reproduce`): which command
runs a recipe, the paper's test protocol, the zero-shot rows, and the tiny profile's overrides from
`recipes/tiny/profile.yaml`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medvlm_trl.errors import RecipeError, ReproduceError
from medvlm_trl.recipe import load_yaml as read_yaml
from medvlm_trl.recipe import parse_args, recipe_keys, training_parser, unknown_keys

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
    here = Path(__file__).resolve().parents[2] / "recipes"
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
    """A recipe, protocol or profile file (`medvlm_trl.recipe.load_yaml`), its problems a `ReproduceError`."""
    return read_yaml(path, error=ReproduceError)


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
    """The TrlParser of a training command, exactly as its `main` builds it (`medvlm_trl.recipe.training_parser`)."""
    if command not in TRAIN_COMMANDS:
        raise ReproduceError(f"{command!r} is not a training command ({TRAIN_COMMANDS})")
    return training_parser(command)


def training_keys(command: str) -> set[str]:
    return recipe_keys(make_parser(command))


def eval_keys() -> set[str]:
    from medvlm_trl.configs import EvalArguments

    return {f.name for f in dataclasses.fields(EvalArguments)}


def _unknown(keys, known: set[str], where: str) -> None:
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
    from medvlm_trl.configs import EvalArguments

    try:
        return EvalArguments(**settings)
    except (TypeError, ValueError) as err:
        raise ReproduceError(f"{where}: {err}") from err


def parse_training_recipe(path: str | os.PathLike, command: str | None = None, overrides: Sequence[str] = ()):
    """Parse a training recipe exactly as its command would (unknown keys refused); returns the dataclasses."""
    command = command or command_for(path)
    parser = make_parser(command)
    argv = ["--config", str(path), *overrides]
    try:
        return parse_args(argv, parser, fail_with_unknown_args=True)
    except RecipeError as err:
        raise ReproduceError(str(err)) from err
