"""MedVLMGRPOConfig and MedVLMScriptArguments: TRL's defaults stay, `loss_preset` maps onto TRL's own loss fields, and
a contradiction between a preset and an explicit setting is an error (MedVLM-R1 section 3; RL-MedVQA study
section 3, Dr.GRPO)."""

import dataclasses

import helpers
import pytest
from trl import GRPOConfig, ModelConfig

from medvlm_trl.configs import LOSS_PRESETS, MedVLMGRPOConfig, MedVLMScriptArguments
from medvlm_trl.data.images import DEFAULT_MAX_PIXELS
from medvlm_trl.grpo import make_parser, parse_args

CPU = {"bf16": False}  # TRL defaults bf16 to True, which a CPU-only machine refuses


def config(tmp_path, **kwargs):
    return MedVLMGRPOConfig(output_dir=str(tmp_path), **CPU, **kwargs)


def test_trl_defaults_stay_without_a_preset(tmp_path):
    ours, trl = config(tmp_path), GRPOConfig(output_dir=str(tmp_path), **CPU)
    for name in ("loss_type", "scale_rewards", "beta", "num_generations", "learning_rate", "temperature",
                 "max_completion_length", "multi_objective_aggregation", "epsilon", "use_vllm", "vllm_mode"):  # fmt: skip
        assert getattr(ours, name) == getattr(trl, name), name
    # What TRL-NOTES.md records for TRL 1.16, so an upgrade that changes them is noticed here.
    assert (ours.loss_type, ours.scale_rewards, ours.beta) == ("dapo", "group", 0.0)


def test_pixel_bounds_default_to_the_study():
    fields = {f.name: f for f in dataclasses.fields(MedVLMGRPOConfig)}
    assert fields["max_pixels"].default == DEFAULT_MAX_PIXELS == 401408
    assert fields["min_pixels"].default == 3136


@pytest.mark.parametrize(
    "preset, loss_type, scale_rewards", [("grpo", "grpo", "group"), ("dr_grpo", "dr_grpo", "none")]
)
def test_preset_sets_trl_loss_fields(tmp_path, preset, loss_type, scale_rewards):
    args = config(tmp_path, loss_preset=preset)
    assert (args.loss_type, args.scale_rewards) == (loss_type, scale_rewards)
    assert args.multi_objective_aggregation == "sum_then_normalize"


@pytest.mark.parametrize(
    "preset, field, value",
    [
        ("grpo", "loss_type", "grpo"),
        ("grpo", "scale_rewards", "group"),
        ("grpo", "scale_rewards", True),
        ("dr_grpo", "loss_type", "dr_grpo"),
        ("dr_grpo", "scale_rewards", "none"),
        ("dr_grpo", "scale_rewards", False),
        ("dr_grpo", "scale_rewards", "false"),
    ],
)
def test_preset_accepts_an_agreeing_explicit_setting(tmp_path, preset, field, value):
    args = config(tmp_path, loss_preset=preset, **{field: value})
    assert (args.loss_type, args.scale_rewards) == tuple(LOSS_PRESETS[preset].values())


@pytest.mark.parametrize(
    "preset, field, value",
    [
        ("grpo", "loss_type", "dapo"),  # TRL's default value, but given explicitly: still a contradiction
        ("grpo", "loss_type", "dr_grpo"),
        ("grpo", "scale_rewards", "none"),
        ("grpo", "scale_rewards", False),
        ("grpo", "scale_rewards", "batch"),
        ("dr_grpo", "loss_type", "grpo"),
        ("dr_grpo", "scale_rewards", "group"),  # TRL's default value, given explicitly
        ("dr_grpo", "scale_rewards", True),
    ],
)
def test_preset_refuses_a_contradicting_explicit_setting(tmp_path, preset, field, value):
    with pytest.raises(ValueError, match=rf"loss_preset='{preset}' sets {field}=.*but {field}="):
        config(tmp_path, loss_preset=preset, **{field: value})


def test_preset_refuses_per_reward_normalisation(tmp_path):
    with pytest.raises(ValueError, match="multi_objective_aggregation"):
        config(tmp_path, loss_preset="grpo", multi_objective_aggregation="normalize_then_sum")
    assert config(tmp_path, multi_objective_aggregation="normalize_then_sum").loss_type == "dapo"


@pytest.mark.parametrize("loss_type", ["bnpo", "cispo", "sapo", "dr_grpo", "grpo"])
def test_without_a_preset_any_trl_loss_passes_through(tmp_path, loss_type):
    args = config(tmp_path, loss_type=loss_type, scale_rewards="batch")
    assert (args.loss_type, args.scale_rewards) == (loss_type, "batch")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"loss_preset": "ppo"}, "loss_preset must be one of"),
        ({"prompt_template": "chatty"}, "prompt_template must be one of"),
        ({"min_pixels": 0}, "min_pixels <= max_pixels"),
        ({"min_pixels": 200_000, "max_pixels": 100_000}, "min_pixels <= max_pixels"),
        ({"reward_funcs": ["format", "accuracy"], "reward_weights": [1.0]}, "one weight per reward"),
        ({"reward_funcs": ["format", "semantic"]}, "semantic_judge_model"),
    ],
)
def test_bad_settings_fail_with_a_clear_message(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **kwargs)


def test_script_arguments_validate():
    assert MedVLMScriptArguments(test_manifests="test.json").test_manifests == ["test.json"]
    with pytest.raises(ValueError, match="max_train_samples"):
        MedVLMScriptArguments(max_train_samples=0)


def test_every_field_we_add_has_help():
    trl_fields = {f.name: f for f in dataclasses.fields(GRPOConfig)}
    ours = [f for f in dataclasses.fields(MedVLMGRPOConfig) if f.init]
    added = [f for f in ours if f.name not in trl_fields or f.metadata is not trl_fields[f.name].metadata]
    assert {"loss_preset", "min_pixels", "max_pixels", "reward_funcs", "prompt_template", "semantic_judge_model"} <= {
        f.name for f in added
    }
    for f in added + list(dataclasses.fields(MedVLMScriptArguments)):
        assert f.metadata.get("help", "").strip(), f"{f.name} has no help text"


def test_parser_dataclasses_share_no_field_name():
    seen: dict[str, str] = {}
    for dc in (MedVLMScriptArguments, MedVLMGRPOConfig, ModelConfig):
        for f in dataclasses.fields(dc):
            assert f.name not in seen, f"{f.name} is in both {seen[f.name]} and {dc.__name__}"
            seen[f.name] = dc.__name__
    make_parser()  # argparse itself refuses duplicate options


def write_recipe(tmp_path, **keys):
    return str(helpers.write_recipe(tmp_path, {"output_dir": str(tmp_path / "out"), **CPU, **keys}))


def test_recipe_and_command_line_fill_the_three_dataclasses(tmp_path):
    recipe = write_recipe(
        tmp_path,
        model_name_or_path="some/model",
        dataset_name="sample",
        loss_preset="dr_grpo",
        beta=0.04,
        reward_funcs=["format", "accuracy"],
        reward_weights=[1.0, 2.0],
        use_vllm=True,
        vllm_mode="colocate",
        use_peft=True,
        lora_r=8,
    )
    script, train, model = parse_args(["--config", recipe, "--scale_rewards", "false", "--max_pixels", "200704"])
    assert script.dataset_name == "sample"
    assert (train.loss_type, train.scale_rewards, train.beta) == ("dr_grpo", "none", 0.04)
    assert train.reward_funcs == ["format", "accuracy"] and train.reward_weights == [1.0, 2.0]
    assert (train.use_vllm, train.vllm_mode) == (True, "colocate")  # passed through to TRL untouched
    assert train.max_pixels == 200704
    assert (model.model_name_or_path, model.use_peft, model.lora_r) == ("some/model", True, 8)


def test_command_line_contradiction_with_recipe_preset_is_an_error(tmp_path):
    recipe = write_recipe(tmp_path, loss_preset="grpo")
    with pytest.raises(ValueError, match="loss_type"):
        parse_args(["--config", recipe, "--loss_type", "dapo"])


def test_judge_kwargs_from_the_command_line_are_json(tmp_path):
    recipe = write_recipe(tmp_path, reward_funcs=["semantic"], semantic_judge_model="judge")
    _, train, _ = parse_args(["--config", recipe, "--semantic_judge_kwargs", '{"batch_size": 4}'])
    assert train.semantic_judge_kwargs == {"batch_size": 4}


def test_unknown_recipe_key_is_named(tmp_path):
    recipe = write_recipe(tmp_path, loss_presets="grpo", learning_rte=1e-6)
    with pytest.raises(ValueError, match=r"'learning_rte' \(did you mean 'learning_rate'\?\).*'loss_presets'"):
        parse_args(["--config", recipe])
