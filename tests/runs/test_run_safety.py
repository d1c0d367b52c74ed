"""Run safety (issue 8, item 4): one run per output dir, resume only from a whole checkpoint on the same split, a run
record next to every checkpoint, and `trust_remote_code` off unless a recipe turns it on."""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from medvlm_trl import run_safety
from medvlm_trl.run_safety import (
    RUN_FILE,
    RunInfoCallback,
    RunSafetyArguments,
    RunSafetyError,
    check_output_dir,
    prepare_run,
    resolve_resume,
    split_info,
)

PACKAGE = Path(run_safety.__file__).parent


@pytest.fixture(autouse=True)
def _forget_prepared_runs():
    yield
    run_safety._PREPARED.clear()


def make_checkpoint(folder: Path, step: int, *, state=True, optimizer=True, scheduler=True, record=None) -> Path:
    """A checkpoint folder with the files transformers writes (contents do not matter to the checks)."""
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if optimizer:
        (path / "optimizer.pt").write_bytes(b"adam")
    if scheduler:
        (path / "scheduler.pt").write_bytes(b"linear")
    if state:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    if record is not None:
        (path / RUN_FILE).write_text(json.dumps(record))
    return path


def make_config(**kwargs):
    """TRL's GRPOConfig with the run-safety field mixed in, as the entry points' configs do."""
    from trl import GRPOConfig

    @dataclass
    class Config(RunSafetyArguments, GRPOConfig):
        pass

    kwargs.setdefault("report_to", "none")
    kwargs.setdefault("use_cpu", True)  # TRL's configs default to bf16, which needs use_cpu on a machine without GPU
    return Config(**kwargs)


@dataclass
class ScriptArgs:
    dataset_name: str = "sample"
    dataset_train_split: str = "train"
    data_dir: str | None = None
    split_file: str | None = None
    max_train_samples: int | None = None
    skip_bad_rows: bool = False


# --- rule 1: one run per output dir ------------------------------------------------------------------------------


def test_missing_or_empty_output_dir_starts_fresh(tmp_path):
    assert check_output_dir(tmp_path / "new", resume=False, overwrite=False) == "fresh"
    assert check_output_dir(tmp_path, resume=False, overwrite=False) == "fresh"


def test_output_dir_of_another_run_is_refused_without_resume_or_overwrite(tmp_path):
    make_checkpoint(tmp_path, 2)
    with pytest.raises(RunSafetyError) as err:
        check_output_dir(tmp_path, resume=False, overwrite=False)
    message = str(err.value)
    assert str(tmp_path) in message and "checkpoint-2" in message
    assert "--resume_from_checkpoint" in message and "--overwrite_output_dir" in message


def test_output_dir_of_another_run_may_be_resumed_or_overwritten(tmp_path):
    (tmp_path / "trainer_state.json").write_text("{}")
    assert check_output_dir(tmp_path, resume=True, overwrite=False) == "resume"
    assert check_output_dir(tmp_path, resume=False, overwrite=True) == "overwrite"
    with pytest.raises(RunSafetyError, match="choose one"):
        check_output_dir(tmp_path, resume=True, overwrite=True)


def test_a_folder_that_holds_no_run_is_never_emptied(tmp_path):
    (tmp_path / "notes.txt").write_text("my thesis")
    with pytest.raises(RunSafetyError, match="holds no training run"):
        check_output_dir(tmp_path, resume=False, overwrite=True)


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "out"
    target.write_text("x")
    with pytest.raises(RunSafetyError, match="not a folder"):
        check_output_dir(target, resume=False, overwrite=False)


def test_overwrite_output_dir_parses_from_a_recipe_and_the_command_line(tmp_path):
    from trl import GRPOConfig, TrlParser

    @dataclass
    class Config(RunSafetyArguments, GRPOConfig):
        pass

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'run'}\noverwrite_output_dir: true\nreport_to: none\nuse_cpu: true\n")
    (args,) = TrlParser((Config,)).parse_args_and_config(["--config", str(recipe)])
    assert args.overwrite_output_dir is True
    (args,) = TrlParser((Config,)).parse_args_and_config(["--config", str(recipe), "--overwrite_output_dir", "false"])
    assert args.overwrite_output_dir is False
    assert make_config(output_dir=str(tmp_path / "x")).overwrite_output_dir is False


def test_prepare_run_refuses_and_leaves_the_other_run_untouched(tmp_path):
    out = tmp_path / "run"
    make_checkpoint(out, 3)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(RunSafetyError):
        prepare_run(make_config(output_dir=str(out)), ScriptArgs(), argv=[])
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_prepare_run_overwrite_deletes_the_old_run_first(tmp_path):
    out = tmp_path / "run"
    make_checkpoint(out, 3)
    (out / "config.json").write_text("{}")
    args = make_config(output_dir=str(out), overwrite_output_dir=True)
    prepare_run(args, ScriptArgs(), argv=[])
    assert sorted(p.name for p in out.iterdir()) == [RUN_FILE]
    assert args.resume_from_checkpoint is None


# --- rule 2: resume from a whole checkpoint, on the same split ---------------------------------------------------


def test_resume_last_picks_the_newest_complete_checkpoint_and_names_the_broken_one(tmp_path, caplog):
    make_checkpoint(tmp_path, 1)
    make_checkpoint(tmp_path, 2)
    make_checkpoint(tmp_path, 10, state=False)  # killed while saving: no trainer_state.json yet
    with caplog.at_level(logging.WARNING, logger="medvlm_trl.run_safety"):
        assert resolve_resume(tmp_path, "last") == str(tmp_path / "checkpoint-2")
    assert "checkpoint-10" in caplog.text and "trainer_state.json" in caplog.text
    for spelling in ("true", "True", "latest", True):
        assert resolve_resume(tmp_path, spelling) == str(tmp_path / "checkpoint-2")
    for spelling in (None, False, "false", ""):
        assert resolve_resume(tmp_path, spelling) is None


def test_resume_from_a_checkpoint_without_optimizer_or_scheduler_state_is_refused(tmp_path):
    no_optimizer = make_checkpoint(tmp_path, 1, optimizer=False)
    no_scheduler = make_checkpoint(tmp_path, 2, scheduler=False)
    with pytest.raises(RunSafetyError, match="no optimizer state"):
        resolve_resume(tmp_path, str(no_optimizer))
    with pytest.raises(RunSafetyError, match="no scheduler.pt"):
        resolve_resume(tmp_path, str(no_scheduler))
    with pytest.raises(RunSafetyError, match="no complete checkpoint"):
        resolve_resume(tmp_path, "last")  # neither is whole, so there is nothing to resume


def test_resume_last_with_nothing_to_resume_is_an_error(tmp_path):
    with pytest.raises(RunSafetyError, match="no complete checkpoint"):
        resolve_resume(tmp_path / "empty", "last")


def test_deepspeed_checkpoint_counts_as_whole(tmp_path):
    path = make_checkpoint(tmp_path, 4, optimizer=False, scheduler=False)
    (path / "global_step4").mkdir()  # DeepSpeed: optimizer and scheduler state live here
    assert resolve_resume(tmp_path, "last") == str(path)


def test_prepare_run_resolves_resume_and_keeps_the_history(tmp_path):
    out = tmp_path / "run"
    first = make_config(output_dir=str(out))
    prepare_run(first, ScriptArgs(), argv=["--max_steps", "4"])
    make_checkpoint(out, 2, record=json.loads((out / RUN_FILE).read_text()))
    args = make_config(output_dir=str(out), resume_from_checkpoint="last")
    record = prepare_run(args, ScriptArgs(), argv=["--max_steps", "4", "--resume_from_checkpoint", "last"])
    assert args.resume_from_checkpoint == str(out / "checkpoint-2")
    assert record["resumed_from"] == str(out / "checkpoint-2")
    saved = json.loads((out / RUN_FILE).read_text())
    assert [h["command"] for h in saved["history"]] == [["--max_steps", "4"]]


def test_resume_on_another_split_is_refused(tmp_path):
    out = tmp_path / "run"
    prepare_run(make_config(output_dir=str(out)), ScriptArgs(max_train_samples=8), argv=[])
    make_checkpoint(out, 2, record=json.loads((out / RUN_FILE).read_text()))
    args = make_config(output_dir=str(out), resume_from_checkpoint="last")
    with pytest.raises(RunSafetyError, match="other settings than it was trained with .max_train_samples 8 -> 16"):
        prepare_run(args, ScriptArgs(max_train_samples=16), argv=[])


def test_resume_with_an_edited_recipe_only_warns(tmp_path, caplog):
    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rate: 1.0e-6\n")
    prepare_run(make_config(output_dir=str(out)), ScriptArgs(), argv=["--config", str(recipe)])
    make_checkpoint(out, 2, record=json.loads((out / RUN_FILE).read_text()))
    recipe.write_text("learning_rate: 2.0e-6\n")
    args = make_config(output_dir=str(out), resume_from_checkpoint="last")
    with caplog.at_level(logging.WARNING, logger="medvlm_trl.run_safety"):
        prepare_run(args, ScriptArgs(), argv=["--config", str(recipe)])
    assert "recipe whose text changed" in caplog.text


# --- rule 2, continued: the resumed weights are the checkpoint's --------------------------------------------------


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_vlm):
    """A checkpoint of the tiny Qwen2-VL as `Trainer` writes it (`save_pretrained`: the original key names), and a
    model whose weights then moved on (as they do when transformers' resume leaves them at the initial values)."""
    import torch
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm)
    checkpoint = tmp_path / "checkpoint-2"
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.5)
    model.save_pretrained(checkpoint)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for param in model.parameters():
            param.sub_(0.5)
    return model, checkpoint, saved


def test_checkpoint_is_saved_under_other_key_names_than_the_model_uses(tiny_checkpoint):
    """Why `restore_checkpoint_weights` exists: transformers' resume does `model.load_state_dict(file, strict=False)`,
    which matches none of the language-model or vision weights of a Qwen2-VL checkpoint."""
    from safetensors.torch import load_file

    model, checkpoint, _ = tiny_checkpoint
    result = model.load_state_dict(load_file(checkpoint / "model.safetensors"), strict=False)
    assert any(key.startswith("model.language_model.") for key in result.missing_keys)
    assert any(key.startswith("model.layers.") for key in result.unexpected_keys)


def test_restore_checkpoint_weights_loads_them_under_the_models_names(tiny_checkpoint):
    import torch

    from medvlm_trl.run_safety import restore_checkpoint_weights

    model, checkpoint, saved = tiny_checkpoint
    restored = restore_checkpoint_weights(model, checkpoint)
    assert "model.language_model.embed_tokens.weight" in restored and "model.visual.patch_embed.proj.weight" in restored
    assert sorted(restored) == sorted(saved)  # every weight had moved, so every one was copied back
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    assert restore_checkpoint_weights(model, checkpoint) == []  # now equal: nothing to do


def test_restore_checkpoint_weights_refuses_weights_the_model_has_no_place_for(tiny_checkpoint):
    from safetensors.torch import load_file, save_file

    from medvlm_trl.run_safety import restore_checkpoint_weights

    model, checkpoint, _ = tiny_checkpoint
    tensors = load_file(checkpoint / "model.safetensors")
    tensors["model.layers.9.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"].clone()
    save_file(tensors, checkpoint / "model.safetensors")
    with pytest.raises(RunSafetyError, match=r"no place for: model\.layers\.9\.mlp\.up_proj\.weight"):
        restore_checkpoint_weights(model, checkpoint)
    tensors.pop("model.layers.9.mlp.up_proj.weight")
    tensors["lm_head.weight"] = tensors["lm_head.weight"][:, :8].contiguous()
    save_file(tensors, checkpoint / "model.safetensors")
    with pytest.raises(RunSafetyError, match="lm_head.weight has shape"):
        restore_checkpoint_weights(model, checkpoint)


def test_restore_leaves_adapter_and_deepspeed_checkpoints_to_their_loaders(tiny_checkpoint):
    from medvlm_trl.run_safety import restore_checkpoint_weights

    model, checkpoint, saved = tiny_checkpoint
    (checkpoint / "global_step2").mkdir()  # DeepSpeed restores its engine state (weights included) itself
    assert restore_checkpoint_weights(model, checkpoint) == []
    (checkpoint / "global_step2").rmdir()
    (checkpoint / "model.safetensors").rename(checkpoint / "adapter_model.safetensors")  # PEFT loads adapters itself
    assert restore_checkpoint_weights(model, checkpoint) == []


# --- rule 3: the run record --------------------------------------------------------------------------------------


def test_run_record_names_recipe_split_and_versions(tmp_path):
    import accelerate
    import torch
    import transformers
    import trl

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("max_steps: 3\n")
    manifest = tmp_path / "train.json"
    manifest.write_text(
        json.dumps(
            {"format": "medvlm-trl/split-manifest", "dataset": "huatuo", "name": "medvlm_r1", "split": "train",
             "seed": 42, "rows": [{"id": "a"}, {"id": "b"}]}
        )
    )  # fmt: skip
    out = tmp_path / "run"
    record = prepare_run(
        make_config(output_dir=str(out), seed=7),
        ScriptArgs(dataset_name="huatuo", split_file=str(manifest)),
        argv=["--config", str(recipe), "--seed", "7"],
    )
    assert json.loads((out / RUN_FILE).read_text()) == json.loads(json.dumps(record, default=str))
    assert record["recipe"] == {"path": str(recipe), "sha256": hashlib.sha256(recipe.read_bytes()).hexdigest()}
    assert record["command"] == ["--config", str(recipe), "--seed", "7"]
    split = record["split"]
    assert split["dataset_name"] == "huatuo" and split["dataset_train_split"] == "train"
    assert split["split_file"]["sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert (split["split_file"]["name"], split["split_file"]["num_rows"]) == ("medvlm_r1", 2)
    versions = record["versions"]
    assert versions["trl"] == trl.__version__ and versions["transformers"] == transformers.__version__
    assert versions["torch"] == torch.__version__ and versions["accelerate"] == accelerate.__version__
    assert versions["medvlm-trl"] is not None
    assert (record["seed"], record["world_size"], record["trust_remote_code"]) == (7, 1, False)


def test_split_id_follows_the_manifest_contents_not_its_location(tmp_path):
    manifest = tmp_path / "a" / "train.json"
    manifest.parent.mkdir()
    manifest.write_text('{"rows": [{"id": "1"}]}')
    moved = tmp_path / "b" / "renamed.json"
    moved.parent.mkdir()
    shutil.copy(manifest, moved)
    base = split_info(ScriptArgs(split_file=str(manifest)))["split_id"]
    assert split_info(ScriptArgs(split_file=str(moved), data_dir="/elsewhere"))["split_id"] == base
    moved.write_text('{"rows": [{"id": "2"}]}')
    assert split_info(ScriptArgs(split_file=str(moved)))["split_id"] != base
    assert split_info(ScriptArgs(split_file=str(manifest), max_train_samples=1))["split_id"] != base
    assert split_info(ScriptArgs(split_file=str(manifest), dataset_name="pmc_vqa"))["split_id"] != base


def test_callback_writes_the_record_into_every_checkpoint(tmp_path, tiny_lm):
    """A real `Trainer` run: each checkpoint-k gets the record at step k, with the hash of the rows trained on."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    ids = [f"row-{i}" for i in range(8)]
    dataset = Dataset.from_dict({"id": ids, "input_ids": [[5, 6, 7, 8]] * 8})

    def collate(rows):
        input_ids = torch.tensor([row["input_ids"] for row in rows])
        return {"input_ids": input_ids, "labels": input_ids}

    out = tmp_path / "run"
    args = TrainingArguments(
        output_dir=str(out), max_steps=3, save_steps=1, per_device_train_batch_size=2, report_to="none",
        remove_unused_columns=False, use_cpu=True, logging_steps=1,
    )  # fmt: skip
    prepare_run(args, ScriptArgs(), argv=["--max_steps", "3"])
    trainer = Trainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_lm), args=args, train_dataset=dataset, data_collator=collate
    )
    trainer.add_callback(RunInfoCallback())
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)

    expected_rows = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    for step in (1, 2, 3):
        saved = json.loads((out / f"checkpoint-{step}" / RUN_FILE).read_text())
        assert saved["global_step"] == step
        assert saved["command"] == ["--max_steps", "3"]
        assert (saved["split"]["rows_sha256"], saved["split"]["num_rows"]) == (expected_rows, 8)
    final = json.loads((out / RUN_FILE).read_text())
    assert final["global_step"] == 3 and "finished_at" in final


def test_callback_refuses_to_resume_on_other_rows(tmp_path):
    from datasets import Dataset
    from transformers import TrainerControl, TrainerState, TrainingArguments

    checkpoint = make_checkpoint(tmp_path, 2, record={"split": {"rows_sha256": "0" * 64}})
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    args.resume_from_checkpoint = str(checkpoint)

    class Loader:
        dataset = Dataset.from_dict({"id": ["x", "y"]})

    with pytest.raises(RunSafetyError, match="other rows"):
        RunInfoCallback().on_train_begin(args, TrainerState(), TrainerControl(), train_dataloader=Loader())


# --- trust_remote_code is off unless a recipe turns it on --------------------------------------------------------


def test_training_configs_default_trust_remote_code_to_false():
    from trl import DPOConfig, GRPOConfig, SFTConfig

    from medvlm_trl.configs import MedVLMGRPOConfig

    for config in (GRPOConfig, SFTConfig, DPOConfig, MedVLMGRPOConfig):
        assert config.__dataclass_fields__["trust_remote_code"].default is False, config.__name__


def test_no_module_turns_trust_remote_code_on_by_itself():
    """Every `trust_remote_code=` in the library comes from a setting: no call passes a literal True and no function
    defaults its `trust_remote_code` parameter to True."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                if isinstance(node.value, ast.Constant) and node.value.value is True:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.value.lineno}")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                names = [a.arg for a in args.args[len(args.args) - len(args.defaults) :]]
                for name, default in zip(names, args.defaults):
                    if name == "trust_remote_code" and isinstance(default, ast.Constant) and default.value is True:
                        offenders.append(f"{path.relative_to(PACKAGE)}:{default.lineno}")
                for arg, default in zip(args.kwonlyargs, args.kw_defaults):
                    if arg.arg == "trust_remote_code" and isinstance(default, ast.Constant) and default.value is True:
                        offenders.append(f"{path.relative_to(PACKAGE)}:{default.lineno}")
    assert not offenders, f"trust_remote_code=True hard-coded at {offenders}"


# Recipes allowed to run code shipped with a checkpoint, each saying why in its comments. A training recipe never is.
REMOTE_CODE_RECIPES = {"medvlm_r1/zero_shot_huatuogpt_vision_7b.yaml"}


def test_only_the_listed_recipes_turn_trust_remote_code_on():
    import yaml

    recipes = PACKAGE.parent / "recipes"
    turned_on = {
        str(path.relative_to(recipes))
        for path in sorted(recipes.rglob("*.yaml"))
        if (yaml.safe_load(path.read_text()) or {}).get("trust_remote_code") is True
    }
    assert turned_on == REMOTE_CODE_RECIPES


def test_grpo_entry_point_parses_trust_remote_code_off_unless_asked():
    from medvlm_trl import grpo

    recipe = str(PACKAGE.parent / "recipes" / "tiny" / "grpo.yaml")
    _, training_args, _ = grpo.parse_args(["--config", recipe])
    assert training_args.trust_remote_code is False
    _, training_args, _ = grpo.parse_args(["--config", recipe, "--trust_remote_code", "true"])
    assert training_args.trust_remote_code is True


@pytest.mark.parametrize("recipe_value", [None, True])
def test_grpo_loader_forwards_the_recipes_trust_remote_code(tmp_path, tiny_vlm, monkeypatch, recipe_value):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import ModelConfig

    from medvlm_trl import grpo
    from medvlm_trl.configs import MedVLMGRPOConfig

    seen = {}
    for cls in (AutoModelForImageTextToText, AutoProcessor):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, _name=cls.__name__, **kwargs):
            seen[_name] = kwargs.get("trust_remote_code")
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    extra = {} if recipe_value is None else {"trust_remote_code": recipe_value}
    training_args = MedVLMGRPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, **extra)
    grpo.load_model_and_processor(ModelConfig(model_name_or_path=tiny_vlm), training_args)
    expected = bool(recipe_value)
    assert seen == {"AutoModelForImageTextToText": expected, "AutoProcessor": expected}


def test_sft_and_dpo_forward_trust_remote_code_to_trl_model_loading(tmp_path):
    from trl import DPOConfig, ModelConfig, SFTConfig

    from medvlm_trl.sft import apply_model_init_kwargs

    model_args = ModelConfig(model_name_or_path="Qwen/Qwen2-VL-2B-Instruct")
    for config in (SFTConfig, DPOConfig):
        args = config(output_dir=str(tmp_path), report_to="none", use_cpu=True)
        apply_model_init_kwargs(args, model_args)
        assert args.model_init_kwargs["trust_remote_code"] is False
        args = config(output_dir=str(tmp_path), report_to="none", use_cpu=True, trust_remote_code=True)
        apply_model_init_kwargs(args, model_args)
        assert args.model_init_kwargs["trust_remote_code"] is True


# --- a resume keeps every setting that changes what is trained (issue 17, item 1) -----------------------------------

TINY_RECIPE = PACKAGE.parent / "recipes" / "tiny" / "grpo.yaml"
BASELINE_RECIPES = {
    "sft": PACKAGE.parent / "recipes" / "medvlm_r1" / "sft_qwen2vl_2b.yaml",
    "dpo": PACKAGE.parent / "recipes" / "rl_medvqa" / "dpo_qwen2vl_2b_instruct.yaml",
}


def command_parts(command: str):
    """The parser and `main` of a training command."""
    from medvlm_trl import dpo, grpo, sft

    return {
        "grpo": (grpo.make_parser, grpo.main, TINY_RECIPE),
        "sft": (sft.make_parser, sft.main, BASELINE_RECIPES["sft"]),
        "dpo": (dpo.make_dpo_parser, dpo.main, BASELINE_RECIPES["dpo"]),
    }[command]


def command_argv(command: str, out: Path, *extra: str) -> list[str]:
    _, _, recipe = command_parts(command)
    argv = ["--config", str(recipe), "--output_dir", str(out), "--bf16", "false"]
    if command == "grpo":  # the tiny recipe's 2 steps would leave no step to resume after checkpoint-2
        argv += ["--max_steps", "10"]
    else:  # the paper recipes name split files that `make-split` writes; one stands in for them
        split_file = out.parent / "train.json"
        if not split_file.exists():
            split_file.write_text('{"rows": [{"id": "a"}]}')
        argv += ["--split_file", str(split_file)]
    return argv + list(extra)


def prepared(command: str, argv: list[str]) -> dict:
    """`prepare_run` as the command's `main` calls it, on the command line `argv`."""
    make_parser, _, _ = command_parts(command)
    script_args, training_args, model_args = make_parser().parse_args_and_config(argv, fail_with_unknown_args=True)
    return prepare_run(training_args, script_args, argv=argv, model_args=model_args)


def started_run(command: str, out: Path, *extra: str, step: int = 2) -> Path:
    """A run of `command` into `out` that has saved checkpoint-`step` with its run record (as `on_save` writes it)."""
    if not out.exists() or not any(out.iterdir()):
        prepared(command, command_argv(command, out, *extra))
    record = json.loads((out / RUN_FILE).read_text())
    return make_checkpoint(out, step, record={**record, "global_step": step})


@pytest.mark.parametrize("command", ["grpo", "sft", "dpo"])
def test_resume_with_a_changed_training_setting_is_refused_naming_key_old_and_new_value(tmp_path, capsys, command):
    """The issue's case: a run started at max_pixels 50176 (grpo's tiny recipe; 401408 the baselines' recipes)
    resumed with `--max_pixels 200704` trained the rest at the new resolution, exit 0."""
    out = tmp_path / "run"
    started_run(command, out)
    before = (out / RUN_FILE).read_text()
    _, main, _ = command_parts(command)
    changed = ["--max_pixels", "200704", "--learning_rate", "3.5e-5", "--resume_from_checkpoint", "last"]
    assert main(command_argv(command, out, *changed)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    old_pixels = prepared_settings(command, out)["max_pixels"]
    old_rate = prepared_settings(command, out)["learning_rate"]
    assert f"max_pixels {old_pixels} -> 200704" in err and f"learning_rate {old_rate} -> 3.5e-05" in err
    assert "--allow_changed_settings learning_rate max_pixels" in err
    assert (out / RUN_FILE).read_text() == before  # refused before anything was written


def prepared_settings(command: str, out: Path) -> dict:
    return json.loads((out / "checkpoint-2" / RUN_FILE).read_text())["settings"]


@pytest.mark.parametrize(
    "changed",
    [
        ["--model_name_or_path", "Qwen/Qwen2-VL-7B-Instruct"],
        ["--prompt_template", "study"],
        ["--reward_weights", "1.0", "2.0"],
        ["--beta", "0.0"],
        ["--num_generations", "4", "--per_device_train_batch_size", "8"],
        ["--max_completion_length", "32"],
        ["--temperature", "0.7"],
        ["--seed", "7"],
        ["--lr_scheduler_type", "constant"],
        ["--max_steps", "4"],
        ["--loss_preset", "dr_grpo"],
        ["--max_train_samples", "8"],
    ],
    ids=lambda c: c[0].lstrip("-"),
)
def test_every_kind_of_training_setting_must_match_on_resume(tmp_path, changed):
    out = tmp_path / "run"
    started_run("grpo", out)
    keys = [arg.lstrip("-") for arg in changed if arg.startswith("--")]
    with pytest.raises(RunSafetyError, match="other settings than it was trained with") as err:
        prepared("grpo", command_argv("grpo", out, *changed, "--resume_from_checkpoint", "last"))
    for key in keys:
        assert f"{key} " in str(err.value)


def test_output_saving_logging_and_reporting_settings_may_change_on_resume(tmp_path):
    out = tmp_path / "run"
    started_run("grpo", out)
    free = ["--logging_steps", "5", "--save_strategy", "steps", "--save_steps", "3", "--save_total_limit", "2"]
    free += ["--report_to", "tensorboard", "--run_name", "second-try", "--log_completions", "false"]
    free += ["--dataloader_num_workers", "2", "--disable_tqdm", "true"]
    record = prepared("grpo", command_argv("grpo", out, *free, "--resume_from_checkpoint", "last"))
    assert record["resumed_from"] == str(out / "checkpoint-2") and record["setting_changes"] == []


def test_a_deliberate_change_is_recorded_in_the_run_record_and_the_model_card(tmp_path):
    from medvlm_trl import grpo
    from medvlm_trl.model_card import read_model_card

    out = tmp_path / "run"
    started_run("grpo", out)
    argv = command_argv("grpo", out, "--max_pixels", "200704", "--allow_changed_settings", "max_pixels")
    argv += ["--resume_from_checkpoint", "last"]
    script_args, training_args, model_args = grpo.parse_args(argv)
    record = prepare_run(training_args, script_args, argv=argv, model_args=model_args)
    change = {"key": "max_pixels", "from": 50176, "to": 200704, "at_step": 2, "checkpoint": str(out / "checkpoint-2")}
    assert record["setting_changes"] == [change]
    assert json.loads((out / RUN_FILE).read_text())["setting_changes"] == [change]
    grpo.write_card(script_args, training_args, model_args, rows=[{"id": "a"}], recipe=str(TINY_RECIPE))
    assert read_model_card(out)["setting_changes"] == [change]
    assert "| `max_pixels` | `50176` | `200704` | 2 |" in (out / "README.md").read_text()

    # The next checkpoint records the new value: resuming it at 200704 needs no flag and keeps the earlier change;
    # going back to 50176 is a change again.
    started_run("grpo", out, step=4)
    record = prepared("grpo", command_argv("grpo", out, "--max_pixels", "200704", "--resume_from_checkpoint", "last"))
    assert record["setting_changes"] == [change]
    started_run("grpo", out, step=6)
    with pytest.raises(RunSafetyError, match="max_pixels 200704 -> 50176"):
        prepared("grpo", command_argv("grpo", out, "--resume_from_checkpoint", "last"))


def test_allow_changed_settings_names_only_settings_a_resume_must_keep(tmp_path):
    out = tmp_path / "run"
    started_run("grpo", out)
    argv = command_argv("grpo", out, "--allow_changed_settings", "logging_steps", "max_pixel")
    with pytest.raises(RunSafetyError, match="allow_changed_settings names logging_steps, max_pixel, which are not"):
        prepared("grpo", argv + ["--resume_from_checkpoint", "last"])


def test_every_free_setting_is_a_field_of_a_training_command():
    """A misspelt name in FREE_SETTINGS would leave the real setting checked and the list lying."""
    import dataclasses

    from medvlm_trl import dpo, grpo, sft

    names = {
        f.name
        for parser in (grpo.make_parser(), sft.make_parser(), dpo.make_dpo_parser())
        for dc in parser.dataclass_types
        for f in dataclasses.fields(dc)
    }
    assert sorted(run_safety.FREE_SETTINGS - names) == []


def test_a_checkpoint_recorded_without_settings_is_checked_on_its_split_only(tmp_path, caplog):
    out = tmp_path / "run"
    started_run("grpo", out)
    record = json.loads((out / "checkpoint-2" / RUN_FILE).read_text())
    del record["settings"]
    (out / "checkpoint-2" / RUN_FILE).write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="medvlm_trl.run_safety"):
        prepared("grpo", command_argv("grpo", out, "--learning_rate", "2e-5", "--resume_from_checkpoint", "last"))
    assert "records no settings" in caplog.text
    with pytest.raises(RunSafetyError, match="another split"):
        prepared("grpo", command_argv("grpo", out, "--max_train_samples", "3", "--resume_from_checkpoint", "last"))


# --- README's resume command works with a recipe that overwrites (issue 17, item 4) ---------------------------------


def test_a_resume_on_the_command_line_wins_over_the_recipes_overwrite(tmp_path):
    """The tiny recipe sets `overwrite_output_dir: true`; `--resume_from_checkpoint last` used to be refused with
    "both resume_from_checkpoint and overwrite_output_dir are set"."""
    out = tmp_path / "run"
    checkpoint = started_run("grpo", out)
    assert yaml_value(TINY_RECIPE, "overwrite_output_dir") is True
    record = prepared("grpo", command_argv("grpo", out, "--resume_from_checkpoint", "last"))
    assert record["resumed_from"] == str(checkpoint) and checkpoint.is_dir()  # resumed, nothing deleted
    both = command_argv("grpo", out, "--resume_from_checkpoint", "last", "--overwrite_output_dir", "true")
    with pytest.raises(RunSafetyError, match="choose one"):  # both asked for on the command line: still refused
        prepared("grpo", both)
    assert checkpoint.is_dir()


def yaml_value(path: Path, key: str):
    import yaml

    return yaml.safe_load(path.read_text())[key]


def test_a_checkpoint_at_max_steps_is_not_resumed(tmp_path):
    """transformers resumes a finished run by training one step past max_steps and saving it as the run's model."""
    out = tmp_path / "run"
    started_run("grpo", out, step=10)
    with pytest.raises(RunSafetyError, match="checkpoint-10 is at step 10 and this run stops at max_steps 10"):
        prepared("grpo", command_argv("grpo", out, "--resume_from_checkpoint", "last"))
    longer = ["--max_steps", "12", "--allow_changed_settings", "max_steps", "--resume_from_checkpoint", "last"]
    record = prepared("grpo", command_argv("grpo", out, *longer))
    assert record["setting_changes"][0] | {"checkpoint": None} == {
        "key": "max_steps",
        "from": 10,
        "to": 12,
        "at_step": 10,
        "checkpoint": None,
    }
