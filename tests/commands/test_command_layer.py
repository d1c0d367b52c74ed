"""The command layer's one house: one error base, one boundary with one prefix, one parser of `--config`, one
reader of a recipe's YAML, one pixel-bound rule, and no command module importing a sibling command."""

import ast
import importlib
import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

from medvlm_trl import cli, errors
from medvlm_trl.recipe import config_path, normalize_config_flag, parse_args, training_parser

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "medvlm_trl"
TINY = ROOT / "recipes" / "tiny"
BROKEN_YAML = "learning_rate: [1e-6,\nbeta: 0.0\n"

# Every one-line error class, where it was importable before the errors got one home, and its built-in base.
OLD_HOMES = [
    ("medvlm_trl.grpo", "RecipeError", ValueError),
    ("medvlm_trl.loading", "ModelLoadError", ValueError),
    ("medvlm_trl.data.schema", "BadRowError", ValueError),
    ("medvlm_trl.data.images", "ImageLoadError", ValueError),
    ("medvlm_trl.data.audit", "LeakageError", RuntimeError),
    ("medvlm_trl.run_safety", "RunSafetyError", ValueError),
    ("medvlm_trl.eval.run", "EvalInputError", ValueError),
    ("medvlm_trl.reproduce", "ReproduceError", ValueError),
    ("medvlm_trl.vllm_compat", "RolloutPromptMismatchError", RuntimeError),
]


@pytest.mark.parametrize(("module", "name", "builtin"), OLD_HOMES)
def test_every_one_line_error_is_a_medvlm_error_importable_where_it_was(module, name, builtin):
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(errors, name)
    assert issubclass(cls, errors.MedVLMError) and issubclass(cls, builtin)


def test_no_error_class_is_defined_outside_errors_py():
    defined = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and path.name != "errors.py":
                defined.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert defined == []


def test_the_boundary_prints_one_line_with_the_command_and_exits_2(capsys):
    @cli.error_boundary("grpo")
    def main(argv):
        raise errors.BadRowError("q7", "answer_not_in_options", "answer 'G'")

    assert main([]) == 2
    assert capsys.readouterr().err == "medvlm-trl grpo: error: row 'q7': answer_not_in_options (answer 'G')\n"

    @cli.error_boundary("eval")
    def buggy(argv):
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        buggy([])


BAD_FLAGS = {
    "table": ["--paper", "other", "results"],
    "reproduce-table1": ["--paper", "medvlm_r1", "--profile", "huge"],
    "make-split": ["pmc-vqa", "--seed", "many"],
    "audit-split": ["train.json"],
    "demo": ["--steps", "few"],
    "make-sample-data": [],
    "eval": ["--model", "m", "--limit", "five"],
    "grpo": ["--config", str(TINY / "grpo.yaml"), "--beta", "high"],
}


@pytest.mark.parametrize("command", sorted(BAD_FLAGS))
def test_a_bad_flag_is_one_line_under_every_command(command, capsys):
    """`table`, `reproduce-table1` and `make-split` printed argparse's usage text and its own `error:` line."""
    assert cli.main([command, *BAD_FLAGS[command]]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "usage:" not in captured.err, captured.err
    assert captured.err.startswith(f"medvlm-trl {command}: error: "), captured.err


def _broken(tmp_path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN_YAML)
    return path


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("grpo", ["--output_dir", "out"]),
        ("sft", ["--output_dir", "out"]),
        ("dpo", ["--output_dir", "out"]),
        ("eval", []),
        ("make-split", None),
    ],
)
def test_a_malformed_yaml_recipe_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch, command, argv):
    monkeypatch.chdir(tmp_path)
    path = _broken(tmp_path)
    if command == "make-split":
        full = ["make-split", "dataset", "--config", str(path)]
    else:
        full = [command, "--config", str(path), *argv]
    assert cli.main(full) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"medvlm-trl {command}: error: {path}: not a readable YAML file (")
    assert " at line 3, column 1)" in err  # where PyYAML found the problem, on the same line


def test_a_malformed_yaml_recipe_under_reproduce_table1_is_one_line_naming_the_file(tmp_path, capsys):
    """It ended in a `yaml.ParserError` traceback (PyYAML's errors are no `ValueError`)."""
    recipes = tmp_path / "recipes"
    shutil.copytree(ROOT / "recipes" / "medvlm_r1", recipes / "medvlm_r1")
    broken = recipes / "medvlm_r1" / "grpo_qwen2vl_2b.yaml"
    broken.write_text(BROKEN_YAML)
    argv = ["reproduce-table1", "--paper", "medvlm_r1", "--profile", "tiny", "--recipes-dir", str(recipes)]
    assert cli.main([*argv, "--dry-run", "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"medvlm-trl reproduce-table1: error: {broken}: not a readable YAML file (")


def test_config_is_read_the_same_in_both_spellings(tmp_path):
    """`check_recipe` looked only for the token `--config` and TrlParser ignored `--config=PATH`, while the run record
    read both: one argv, two readings. Now one function parses it for all three."""
    recipe = TINY / "grpo.yaml"
    spaced, joined = ["--config", str(recipe), "--output_dir", "o"], [f"--config={recipe}", "--output_dir", "o"]
    assert config_path(spaced) == config_path(joined) == str(recipe)
    assert normalize_config_flag(joined) == spaced
    script_a, train_a, model_a = parse_args(spaced, training_parser("grpo"))
    script_b, train_b, model_b = parse_args(joined, training_parser("grpo"))
    assert script_a == script_b and model_a == model_b
    assert (train_a.learning_rate, train_a.max_steps, train_a.reward_funcs) == (
        train_b.learning_rate,
        train_b.max_steps,
        train_b.reward_funcs,
    )
    assert train_b.max_steps == yaml.safe_load(recipe.read_text())["max_steps"]  # the recipe was read, not skipped
    from medvlm_trl.runs.record import recipe_info

    assert recipe_info(joined)["path"] == recipe_info(spaced)["path"] == str(recipe)
    with pytest.raises(errors.RecipeError, match="--config needs a YAML file"):
        config_path(["--config="])


@pytest.mark.parametrize("spelling", ["spaced", "joined"])
@pytest.mark.parametrize("command", ["grpo", "eval"])
def test_an_unknown_recipe_key_is_refused_in_both_spellings(tmp_path, capsys, command, spelling):
    path = tmp_path / "recipe.yaml"
    base = yaml.safe_load((TINY / "grpo.yaml").read_text()) if command == "grpo" else {"model": "m"}
    path.write_text(yaml.safe_dump({**base, "zzz": 1}))
    flag = ["--config", str(path)] if spelling == "spaced" else [f"--config={path}"]
    assert cli.main([command, *flag, "--output_dir" if command == "grpo" else "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"medvlm-trl {command}: error: {path}: unknown recipe key(s): 'zzz'\n"


BAD_BOUNDS = [(0, 100), (-5, 100), (200_000, 100_000), (100, 0)]


@pytest.mark.parametrize(("min_pixels", "max_pixels"), BAD_BOUNDS)
def test_eval_refuses_the_pixel_bounds_training_refuses(tmp_path, min_pixels, max_pixels):
    from medvlm_trl.configs import BaselineScriptArguments, EvalArguments, MedVLMGRPOConfig

    bounds = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    with pytest.raises(ValueError, match="min_pixels <= max_pixels"):
        MedVLMGRPOConfig(output_dir=str(tmp_path), bf16=False, **bounds)
    with pytest.raises(ValueError, match="min_pixels <= max_pixels"):
        BaselineScriptArguments(**bounds)
    with pytest.raises(ValueError, match="min_pixels <= max_pixels"):
        EvalArguments(model="m", **bounds)


def test_eval_refuses_bounds_below_one_image_token_as_training_does(tiny_vlm):
    """Both check the model's own floor (28 x 28 pixels a Qwen2-VL token) with one rule."""
    from transformers import AutoProcessor

    from medvlm_trl.eval.generators import model_image_factor
    from medvlm_trl.training import pin_pixels

    with pytest.raises(errors.RecipeError, match="need 784 <= min_pixels"):
        pin_pixels(AutoProcessor.from_pretrained(tiny_vlm), 100, 50_000, tiny_vlm)
    with pytest.raises(errors.EvalInputError, match="need 784 <= min_pixels"):
        model_image_factor(tiny_vlm, 100, 50_000)
    assert model_image_factor(tiny_vlm, 784, 50_000) == 28


# Modules whose body runs a command (not a library that also has a `main`): none may import another.
COMMAND_MODULES = {
    "medvlm_trl.grpo",
    "medvlm_trl.sft",
    "medvlm_trl.dpo",
    "medvlm_trl.eval.run",
    "medvlm_trl.reproduce",
    "medvlm_trl.demo",
}


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _files(module: str) -> list[Path]:
    """The source files of a module, or of every module of a package (`medvlm_trl.reproduce`)."""
    origin = Path(importlib.util.find_spec(module).origin)
    return sorted(origin.parent.glob("*.py")) if origin.name == "__init__.py" else [origin]


def test_no_command_module_imports_a_sibling_command():
    offenders = []
    for module in sorted(COMMAND_MODULES):
        for path in _files(module):
            siblings = {m for m in COMMAND_MODULES - {module} if not m.startswith(module + ".")}
            for imported in _imported_modules(path) & siblings:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {imported}")
    assert offenders == []
    # `demo` runs `eval` and `grpo`, and `reproduce-table1` every row's command, through the command table.
    assert "medvlm_trl.cli.run" in _imported_modules(PACKAGE / "demo.py")


def test_every_command_main_carries_the_boundary():
    for name, (target, _) in cli.COMMANDS.items():
        module, func = target.split(":")
        assert getattr(getattr(importlib.import_module(module), func), "error_boundary", None) in (name, None)
    for module in sorted(COMMAND_MODULES):
        assert importlib.import_module(module).main.error_boundary is not None, module
