"""Reading a recipe and its command-line overrides, once, for every command.

A recipe is a YAML mapping of keys to values; a command line is `--config RECIPE.yaml` (or `--config=RECIPE.yaml`)
and `--key value` overrides, which win. Every command reads both through this module, so they agree on what a
recipe is:

- `config_path` is the one parser of `--config`: the run record, the recipe check and `TrlParser` all see the file
  it finds (`normalize_config_flag` rewrites `--config=PATH` as `--config PATH`, the only form `TrlParser` reads).
- `load_yaml` reads a recipe; a file that is missing, not YAML or not a mapping is a one-line `RecipeError` naming it.
- `check_recipe` refuses a key no dataclass of the command knows (`unknown_keys`, with a "did you mean") and a value
  that a number or yes/no field cannot take (`wrong_value_types`) before `TrlParser` would hand them on silently.
- `one_line_errors` makes a parser raise a `RecipeError` naming the flag instead of printing its usage text.
- `parse_args` is all of that for a `TrlParser` command: a value a dataclass refuses in its `__post_init__` is a
  `RecipeError` too, so `medvlm_trl.cli` reports it in one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
from collections.abc import Sequence
from typing import Any

from medvlm_trl.errors import MedVLMError, RecipeError

CONFIG_FLAG = "--config"
# Keys of a recipe that are not dataclass fields but that TrlParser itself understands.
PARSER_KEYS = {"env"}


def config_path(argv: Sequence[str]) -> str | None:
    """The recipe file of a command line, `--config PATH` or `--config=PATH`; None without one.

    >>> config_path(["--config", "a.yaml", "--beta", "0.1"]), config_path(["--config=b.yaml"]), config_path([])
    ('a.yaml', 'b.yaml', None)
    """
    argv = list(argv)
    for index, arg in enumerate(argv):
        if arg == CONFIG_FLAG:
            if index + 1 >= len(argv) or not argv[index + 1]:
                raise RecipeError(f"{CONFIG_FLAG} needs a YAML file")
            return argv[index + 1]
        if arg.startswith(CONFIG_FLAG + "="):
            value = arg.split("=", 1)[1]
            if not value:
                raise RecipeError(f"{CONFIG_FLAG} needs a YAML file")
            return value
    return None


def normalize_config_flag(argv: Sequence[str]) -> list[str]:
    """`argv` with `--config=PATH` written as `--config PATH`, the form `TrlParser` reads.

    >>> normalize_config_flag(["--config=a.yaml", "--beta", "0.1"])
    ['--config', 'a.yaml', '--beta', '0.1']
    """
    out: list[str] = []
    for arg in argv:
        if arg.startswith(CONFIG_FLAG + "="):
            out += [CONFIG_FLAG, arg.split("=", 1)[1]]
        else:
            out.append(arg)
    return out


def _yaml_problem(err: Exception) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's own text spans several lines)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(err).split())


def load_yaml(path: str | os.PathLike, *, error: type[MedVLMError] = RecipeError) -> dict:
    """A recipe file as a mapping; a file that cannot be read, is not YAML or is not a mapping raises `error` (a
    `RecipeError` unless the caller names its own) naming the file, never PyYAML's traceback."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as err:
        raise error(str(err)) from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise error(f"{path}: not a readable YAML file ({_yaml_problem(err)})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: a recipe must be a YAML mapping of keys to values")
    return data


class OneLineArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` (and its sub-parsers) whose errors are a `RecipeError` naming the flag, so
    `medvlm_trl.cli` reports them in one line instead of the usage text."""

    def error(self, message: str):
        raise RecipeError(message)


def one_line_errors(parser):
    """Make `parser` raise a `RecipeError` naming the flag (`argument --beta: invalid float value: 'high'`) instead
    of printing its whole usage text (some 200 lines for TRL's configs) and exiting."""

    def error(message: str):
        raise RecipeError(message)

    parser.error = error
    return parser


def training_parser(command: str, prog: str | None = None):
    """The `TrlParser` of a training command (`grpo`, `sft`, `dpo`): its dataclasses (`medvlm_trl.configs`) and
    `trl.ModelConfig`, with one-line errors. The command's own `main` and `reproduce-table1` both parse with it."""
    from trl import ModelConfig, TrlParser

    from medvlm_trl.configs import TRAINING_ARGUMENTS

    if command not in TRAINING_ARGUMENTS:
        raise RecipeError(f"{command!r} is not a training command ({', '.join(TRAINING_ARGUMENTS)})")
    return one_line_errors(TrlParser((*TRAINING_ARGUMENTS[command], ModelConfig), prog=prog or f"medvlm-trl {command}"))


def recipe_keys(parser) -> set[str]:
    """Every key a recipe may set: the fields of the parser's dataclasses, plus `env`."""
    return {f.name for dc in parser.dataclass_types for f in dataclasses.fields(dc) if f.init} | PARSER_KEYS


def check_recipe(argv: Sequence[str], parser) -> None:
    """Refuse a `--config` YAML with keys no dataclass knows; TrlParser would pass them on (to `accelerate`)."""
    path = config_path(argv)
    if path is None:
        return
    recipe = load_yaml(path)
    unknown = unknown_keys(recipe, recipe_keys(parser))
    if unknown:
        raise RecipeError(f"{path}: unknown recipe key(s): {', '.join(unknown)}")
    wrong = wrong_value_types(recipe, parser)
    if wrong:
        raise RecipeError(f"{path}: wrong value type(s): {'; '.join(wrong)}")


def wrong_value_types(recipe: dict, parser) -> list[str]:
    """Recipe values that a number or yes/no field cannot take. argparse converts only text values; a YAML list or
    mapping (`beta: [0.04]`), a fraction for an integer or a list for a yes/no would reach training unconverted and
    fail deep inside torch, or not at all. A text value (`beta: high`) is converted here as argparse would, so that
    the error names the recipe key, not a `--beta` flag nobody typed."""

    def kind_of(action) -> str | None:
        # By name: TRL wraps the converter of an `int | None` field (to accept "none") under the inner type's name,
        # and TRL's parser and transformers' each have their own `string_to_bool`.
        name = getattr(action.type, "__name__", "")
        return {"int": "int", "float": "float", "string_to_bool": "bool"}.get(name)

    def converts(value: str, action) -> bool:
        try:
            action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            return False
        return True

    def fits(value, kind: str, action, listed: bool) -> bool:
        if isinstance(value, str):  # argparse converts a text default, but not the items of a list default
            return not listed and converts(value, action)
        if kind == "bool":
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return kind == "float" or isinstance(value, int)

    single = {"int": "an integer", "float": "a number", "bool": "true or false"}
    plural = {"int": "integers", "float": "numbers", "bool": "true/false values"}
    actions: dict = {}
    for action in parser._actions:  # a yes/no field that defaults to true also has a `--no_<name>` (no type) alias
        if action.dest not in actions or actions[action.dest].type is None:
            actions[action.dest] = action
    problems = []
    for key, value in recipe.items():
        action = actions.get(key)
        kind = kind_of(action) if action is not None else None
        if kind is None or value is None:
            continue
        listed = action.nargs in ("+", "*")
        if listed and not (isinstance(value, list) and all(fits(v, kind, action, True) for v in value)):
            problems.append(f"{key} needs a list of {plural[kind]}, got {value!r}")
        elif not listed and not fits(value, kind, action, False):
            problems.append(f"{key} needs {single[kind]}, got {value!r}")
    return problems


def unknown_keys(keys, known: set[str]) -> list[str]:
    """The keys not in `known`, sorted, each quoted with a "did you mean" hint where a known key is close.

    >>> unknown_keys(["learning_rat", "beta"], {"learning_rate", "beta"})
    ["'learning_rat' (did you mean 'learning_rate'?)"]
    """
    hints = []
    for key in sorted((k for k in keys if k not in known), key=str):
        close = difflib.get_close_matches(str(key), known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return hints


def parse_args(argv: Sequence[str] | None, parser, **kwargs: Any) -> tuple:
    """The dataclasses of a `TrlParser` command from `--config RECIPE.yaml` and `--key value` overrides: the recipe
    checked first (`check_recipe`), and any value a dataclass refuses (its `__post_init__` raises `ValueError`) or a
    file it cannot read raised as a `RecipeError`, which `medvlm_trl.cli` reports in one line."""
    argv = normalize_config_flag(sys.argv[1:] if argv is None else argv)
    check_recipe(argv, parser)
    try:
        return parser.parse_args_and_config(args=argv, **kwargs)
    except MedVLMError:
        raise
    except (ValueError, OSError) as err:
        raise RecipeError(str(err)) from err


__all__ = [
    "OneLineArgumentParser",
    "check_recipe",
    "config_path",
    "load_yaml",
    "normalize_config_flag",
    "one_line_errors",
    "parse_args",
    "recipe_keys",
    "training_parser",
    "unknown_keys",
    "wrong_value_types",
]
