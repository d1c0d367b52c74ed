"""`medvlm-trl grpo --config RECIPE.yaml`: the tiny recipes train a couple of steps in a subprocess (also under
`accelerate launch`), save model, processor and card; a recipe key or flag nobody knows fails and is named."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medvlm_trl.grpo import main, parse_args

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes" / "tiny"
BIN = Path(sys.executable).parent


def run(command, tmp_path):
    # Run from a scratch folder so nothing lands in the checkout; recipes are named by absolute path.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def saved_processor_bounds(out: Path) -> tuple[int, int]:
    size = json.loads((out / "processor_config.json").read_text())["image_processor"]["size"]
    return size["shortest_edge"], size["longest_edge"]


@pytest.mark.slow
def test_console_script_trains_the_tiny_grpo_recipe(tiny_vlm, tmp_path):
    out = tmp_path / "grpo"
    command = [str(BIN / "medvlm-trl"), "grpo", "--config", str(TINY / "grpo.yaml")]
    command += ["--model_name_or_path", tiny_vlm, "--output_dir", str(out), "--max_pixels", "12544"]
    result = run(command, tmp_path)
    assert "saved the model, its processor and its card" in result.stdout + result.stderr
    assert (out / "model.safetensors").is_file()
    assert saved_processor_bounds(out) == (3136, 12544)  # saved with the bounds it was trained with
    card = (out / "README.md").read_text()
    assert "method: grpo" in card and "recipe: " in card
    assert json.loads((out / "medvlm_run.json").read_text())["global_step"] == 2
    logged = sorted(glob.glob(str(out / "completions" / "*.parquet")))
    assert [Path(p).name for p in logged] == ["completions_00001.parquet", "completions_00002.parquet"]


@pytest.mark.slow
def test_accelerate_launch_trains_the_tiny_dr_grpo_lora_recipe(tiny_vlm, tmp_path):
    out = tmp_path / "dr_grpo_lora"
    command = [str(BIN / "accelerate"), "launch", "--num_processes", "1", "--cpu", "-m", "medvlm_trl.grpo"]
    command += ["--config", str(TINY / "dr_grpo_lora.yaml"), "--model_name_or_path", tiny_vlm, "--output_dir", str(out)]
    run(command, tmp_path)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()  # LoRA saves the adapter only
    assert "method: dr_grpo" in (out / "README.md").read_text()


def test_unknown_recipe_key_fails_and_is_named(tmp_path, capsys):
    recipe = yaml.safe_load((TINY / "grpo.yaml").read_text())
    recipe["num_generation"] = 4
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["--config", str(path), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown recipe key(s): 'num_generation' (did you mean 'num_generations'?)" in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_unknown_command_line_flag_fails_and_is_named(tmp_path, capsys):
    args = ["--config", str(TINY / "grpo.yaml"), "--output_dir", str(tmp_path / "out"), "--lora_rank", "8"]
    assert main(args) == 2
    assert "--lora_rank" in capsys.readouterr().err


def test_preset_contradiction_on_the_command_line_fails(tmp_path, capsys):
    args = ["--config", str(TINY / "grpo.yaml"), "--output_dir", str(tmp_path / "out"), "--scale_rewards", "none"]
    assert main(args) == 2
    assert (
        "loss_preset='grpo' sets scale_rewards='group', but scale_rewards='none' was given" in capsys.readouterr().err
    )


def test_missing_reward_list_fails_before_loading_anything(tmp_path, capsys):
    recipe = yaml.safe_load((TINY / "grpo.yaml").read_text())
    del recipe["reward_funcs"], recipe["reward_weights"]
    path = tmp_path / "no_rewards.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["--config", str(path), "--output_dir", str(tmp_path / "out")]) == 2
    assert "reward_funcs is required" in capsys.readouterr().err


PAPER_RECIPES = sorted(
    p
    for p in glob.glob(str(ROOT / "recipes" / "**" / "*.yaml"), recursive=True)
    if Path(p).name.startswith(("grpo", "dr_grpo")) and "tiny" not in Path(p).parts
)


@pytest.mark.parametrize("recipe", PAPER_RECIPES, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_paper_grpo_recipes_parse(recipe):
    # bf16 is overridden because this machine may have no bf16 device; everything else is the recipe's own.
    script, train, model = parse_args(["--config", recipe, "--bf16", "false"])
    expected = {"grpo": ("grpo", "group"), "dr_grpo": ("dr_grpo", "none")}[train.loss_preset]
    assert (train.loss_type, train.scale_rewards) == expected
    assert train.beta > 0  # both papers keep the KL term, which TRL 1.16 turns off by default
    assert train.reward_funcs and model.model_name_or_path


def test_tiny_recipes_parse_with_their_documented_objective():
    _, grpo, _ = parse_args(["--config", str(TINY / "grpo.yaml")])
    _, dr, model = parse_args(["--config", str(TINY / "dr_grpo_lora.yaml")])
    assert (grpo.loss_type, grpo.scale_rewards, grpo.use_vllm) == ("grpo", "group", False)
    assert (dr.loss_type, dr.scale_rewards, model.use_peft) == ("dr_grpo", "none", True)


def test_skip_bad_rows_decodes_training_images_and_counts_a_corrupt_one(tmp_path, caplog):
    """Images stay lazy at load time; with skip_bad_rows, GRPO decodes its training rows once before the first step,
    so a corrupt image is counted and passed over instead of stopping training mid-run."""
    import logging
    import shutil

    from medvlm_trl.configs import MedVLMScriptArguments
    from medvlm_trl.data.images import ImageLoadError
    from medvlm_trl.data.sample import sample_dir
    from medvlm_trl.grpo import load_train_rows

    root = tmp_path / "sample"
    shutil.copytree(sample_dir(), root)
    first = json.loads((root / "train.jsonl").read_text().splitlines()[0])
    (root / first["image"]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    args = MedVLMScriptArguments(dataset_name="sample", data_dir=str(root), skip_bad_rows=True)
    with caplog.at_level(logging.WARNING):
        rows = load_train_rows(args)
    assert first["id"] not in {r["id"] for r in rows}
    assert len(rows) == len((root / "train.jsonl").read_text().splitlines()) - 1
    assert "unreadable_image: 1" in caplog.text and first["id"] in caplog.text

    # Without the flag the rows stay lazy: the corrupt image is found where it is used, named by its row.
    lazy = load_train_rows(MedVLMScriptArguments(dataset_name="sample", data_dir=str(root)))
    bad = next(r for r in lazy if r["id"] == first["id"])
    from medvlm_trl.data.images import prepare_image

    with pytest.raises(ImageLoadError, match=first["id"]):
        prepare_image(bad["image"], row_id=bad["id"], factor=28)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("text:a: [1,\n", "not a readable YAML file"),
        ({1: 2, "zzz": 3}, "unknown recipe key(s): 1, 'zzz'"),
        ({"beta": [0.04]}, "beta needs a number, got [0.04]"),
        ({"min_pixels": 3136.5}, "min_pixels needs an integer, got 3136.5"),
        ({"reward_weights": 1.0}, "reward_weights needs a list of numbers, got 1.0"),
        ({"bf16": [False]}, "bf16 needs true or false"),
        ({"gradient_checkpointing": [1]}, "gradient_checkpointing needs true or false"),  # defaults to true
        ({"dataset_name": "smaple"}, "dataset 'smaple': unknown dataset 'smaple'"),
        ({"reward_funcs": ["format", "acuracy"]}, "reward_funcs: unknown reward name(s) ['acuracy']"),
        ({"test_manifests": ["no/such/test.json"]}, "test_manifests: split manifest not found"),
        ({"split_file": "no/such/train.json"}, "no/such/train.json"),
    ],
)
def test_a_bad_recipe_value_or_data_setting_ends_with_one_line(tmp_path, capsys, change, message):
    """Not a YAML traceback, a TypeError from sorting the keys, a crash inside torch on `beta: [0.04]`, or a
    ValueError / FileNotFoundError traceback from the data layer or the reward registry."""
    path = tmp_path / "recipe.yaml"
    if isinstance(change, str):
        path.write_text(change.removeprefix("text:"))
    else:
        recipe = {**yaml.safe_load((TINY / "grpo.yaml").read_text()), **change}
        path.write_text(yaml.safe_dump(recipe))
    assert main(["--config", str(path), "--output_dir", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_a_corrupt_training_image_met_by_the_leakage_audit_is_named_by_its_row_not_as_the_test_manifest(tmp_path):
    """The audit decodes the training images to hash them; an unreadable one is that row's error (ImageLoadError),
    not a `test_manifests:` recipe error pointing at a test manifest that is fine."""
    import shutil

    from medvlm_trl.configs import MedVLMScriptArguments
    from medvlm_trl.data.images import ImageLoadError
    from medvlm_trl.data.manifest import manifest_from_rows
    from medvlm_trl.data.registry import load_rows
    from medvlm_trl.data.sample import sample_dir
    from medvlm_trl.grpo import check_split_overlap, load_train_rows

    root = tmp_path / "sample"
    shutil.copytree(sample_dir(), root)
    first = json.loads((root / "train.jsonl").read_text().splitlines()[0])
    (root / first["image"]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    test = manifest_from_rows(load_rows("sample", "test", data_dir=root), dataset="sample", split="test")
    test.save(tmp_path / "test.json")
    args = MedVLMScriptArguments(
        dataset_name="sample", data_dir=str(root), test_manifests=[str(tmp_path / "test.json")]
    )
    rows = load_train_rows(args)
    with pytest.raises(ImageLoadError, match=f"row {first['id']!r}") as err:
        check_split_overlap(rows, args)
    assert "test_manifests" not in str(err.value)


# --- one line and exit 2 for a wrong value type or a run that would train nothing (issue 17, item 4) -----------------

TRAINING_COMMANDS = {
    "grpo": ("medvlm_trl.grpo", "main", TINY / "grpo.yaml"),
    "sft": ("medvlm_trl.sft", "main", ROOT / "recipes" / "medvlm_r1" / "sft_qwen2vl_2b.yaml"),
    "dpo": ("medvlm_trl.dpo", "main", ROOT / "recipes" / "rl_medvqa" / "dpo_qwen2vl_2b_instruct.yaml"),
}


def command_main(command: str):
    import importlib

    module, name, recipe = TRAINING_COMMANDS[command]
    return getattr(importlib.import_module(module), name), recipe


@pytest.mark.parametrize("command", sorted(TRAINING_COMMANDS))
def test_a_wrong_value_type_in_a_recipe_names_the_file_and_key_in_one_line(tmp_path, capsys, command):
    """It used to print the ~215-line usage text, then `argument --learning_rate: invalid float value: 'fast'`,
    naming a flag nobody typed."""
    main_fn, recipe = command_main(command)
    data = {**yaml.safe_load(recipe.read_text()), "learning_rate": "fast", "max_train_samples": "many"}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main_fn(["--config", str(path), "--output_dir", str(tmp_path / "out"), "--bf16", "false"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{path}: wrong value type(s): learning_rate needs a number, got 'fast'" in err
    assert "max_train_samples needs an integer, got 'many'" in err  # an `int | None` field too


@pytest.mark.parametrize("command", sorted(TRAINING_COMMANDS))
def test_a_wrong_value_type_on_the_command_line_names_the_flag_in_one_line(tmp_path, capsys, command):
    main_fn, recipe = command_main(command)
    argv = ["--config", str(recipe), "--output_dir", str(tmp_path / "out"), "--bf16", "false", "--learning_rate", "x"]
    assert main_fn(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "usage:" not in captured.out + captured.err, captured.err
    assert "argument --learning_rate" in captured.err and "invalid float value: 'x'" in captured.err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max_steps", "0"], "max_steps must be a positive number of optimizer steps (or -1"),
        (["--max_steps", "-3"], "max_steps must be a positive number of optimizer steps (or -1"),
        (["--max_steps", "-1", "--num_train_epochs", "0"], "num_train_epochs must be positive when max_steps is unset"),
        (["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps must be at least 1"),
    ],
)
def test_a_run_that_would_train_nothing_is_refused(tmp_path, capsys, flags, message):
    """`--max_steps 0` trained one step at learning rate 0 and saved the model as a trained one."""
    out = tmp_path / "out"
    assert main(["--config", str(TINY / "grpo.yaml"), "--output_dir", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()  # refused before anything was written
