"""The accelerate configs in `recipes/accelerate/` (issue 8, item 2), read the way `accelerate launch` reads them.

The RL-MedVQA study (Zhu et al., arXiv:2505.13973, Table S2 and appendix A) trains in bf16 with DeepSpeed ZeRO-2 on
4 A100s; ZeRO-3 is there for models that do not fit one GPU per process. No GPU runs these tests, so they check
everything short of a GPU: the YAML parses into accelerate's `ClusterConfig` (which rejects unknown keys), `accelerate
launch`'s own validation turns each file into the launcher it names, the environment it hands the training processes
builds a `DeepSpeedPlugin` with the right ZeRO stage and bf16, and a `--num_processes` on the command line (the GPU
count) wins over the file. The GPU run itself is documented in `bench/results/deepspeed.md`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ACCELERATE_DIR = Path(__file__).resolve().parents[2] / "recipes" / "accelerate"
# file -> what it must say: accelerate's distributed type, the ZeRO stage (DeepSpeed only), the launcher it selects.
EXPECTED = {
    "zero2.yaml": {"distributed_type": "DEEPSPEED", "zero_stage": 2, "launcher": "use_deepspeed"},
    "zero3.yaml": {"distributed_type": "DEEPSPEED", "zero_stage": 3, "launcher": "use_deepspeed"},
    "multi_gpu.yaml": {"distributed_type": "MULTI_GPU", "zero_stage": None, "launcher": "multi_gpu"},
    "single_gpu.yaml": {"distributed_type": "NO", "zero_stage": None, "launcher": None},
}
LAUNCH_TAIL = ["-m", "medvlm_trl.cli", "grpo", "--config", "recipes/some/recipe.yaml"]


def validated_launch_args(config_file: Path, *extra: str):
    """`accelerate launch --config_file FILE [extra] -m medvlm_trl.cli grpo ...`, validated as the command does."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(config_file), *extra, *LAUNCH_TAIL])
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


def test_every_shipped_config_is_checked_here():
    assert sorted(p.name for p in ACCELERATE_DIR.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_into_accelerates_cluster_config(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    raw = yaml.safe_load((ACCELERATE_DIR / name).read_text())
    assert isinstance(raw, dict)
    config = load_config_from_file(str(ACCELERATE_DIR / name))  # raises on keys ClusterConfig does not know
    assert isinstance(config, ClusterConfig)
    expected = EXPECTED[name]
    assert str(config.distributed_type).split(".")[-1] == expected["distributed_type"]
    assert config.mixed_precision == "bf16"  # the study trains in bf16
    assert isinstance(config.num_processes, int) and config.num_processes >= 1
    assert config.num_machines == 1 and config.use_cpu is False
    if expected["distributed_type"] == "NO":
        assert config.num_processes == 1
    if expected["zero_stage"] is not None:
        assert config.deepspeed_config["zero_stage"] == expected["zero_stage"]
        assert config.deepspeed_config.get("offload_optimizer_device", "none") == "none"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_launch_picks_the_launcher_and_the_gpu_count_from_the_command_line(name):
    args, defaults = validated_launch_args(ACCELERATE_DIR / name)
    launcher = EXPECTED[name]["launcher"]
    for flag in ("use_deepspeed", "multi_gpu"):
        assert bool(getattr(args, flag)) is (flag == launcher), flag
    assert args.mixed_precision == "bf16"
    assert (args.module, args.training_script, args.training_script_args) == (True, *LAUNCH_TAIL[1:2], LAUNCH_TAIL[2:])
    if launcher is not None:  # users pass their GPU count; the file's default must not win over it
        args, _ = validated_launch_args(ACCELERATE_DIR / name, "--num_processes", "2")
        assert args.num_processes == 2


@pytest.mark.parametrize("name, stage", [("zero2.yaml", 2), ("zero3.yaml", 3)])
def test_deepspeed_plugin_built_from_the_launch_environment(name, stage, monkeypatch):
    """What each training process sees: `accelerate launch` exports the config as ACCELERATE_* variables and the
    `Accelerator` builds its `DeepSpeedPlugin` from them. Building the plugin needs no `deepspeed` package."""
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args, defaults = validated_launch_args(ACCELERATE_DIR / name, "--num_processes", "2", "--main_process_port", "0")
    # `launch_command` sets this from the config before it calls the DeepSpeed launcher.
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    for key, value in env.items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()
    plugin.set_mixed_precision(env["ACCELERATE_MIXED_PRECISION"])
    ds_config = plugin.deepspeed_config
    assert plugin.zero_stage == stage and ds_config["zero_optimization"]["stage"] == stage
    assert ds_config["bf16"]["enabled"] is True
    # The trainer fills these from the recipe (per_device_train_batch_size, gradient_accumulation_steps).
    assert ds_config["train_micro_batch_size_per_gpu"] == "auto"
    assert ds_config["gradient_accumulation_steps"] == "auto"
    if stage == 3:
        # Without it a ZeRO-3 save holds shards only, and `medvlm-trl eval` could not load output_dir.
        assert ds_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
        assert plugin.zero3_init_flag is True
