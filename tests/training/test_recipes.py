"""Every Table 1 recipe parses as its command parses it (no unknown key), and says what its paper says.

MedVLM-R1 (Pan et al., arXiv:2502.19634): GRPO on 600 MRI questions, G=6, 2 questions a step, 300 steps, KL to the
initial model, format + accuracy reward, R1 prompt; SFT and zero-shot rows with the simple prompt. The RL-MedVQA
study (Zhu et al., arXiv:2505.13973): lr 1e-6, temperature 1.0, 8 generations, 700 completion tokens, KL 0.04,
401408 pixels, bf16, 1500 steps, ZeRO-2 on 4 GPUs, batch 1 per device with gradient accumulation 2 (R1-V's counting:
one question's 8 responses per GPU per pass), gradient checkpointing off, logging every step, checkpoints every 100
steps; GRPO from the base and the Instruct model, + semantic, + ECR / CWR, Dr.GRPO; SFT (full, LoRA) and DPO
baselines; zero-shot rows. Every GRPO recipe generates with colocated vLLM.
"""

from pathlib import Path

import pytest
import yaml

from medvlm_trl import reproduce
from medvlm_trl.reproduce import (
    ReproduceError,
    check_eval_arguments,
    command_for,
    eval_settings,
    load_eval_recipe,
    load_protocol,
    parse_training_recipe,
    table_rows,
)

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
PAPERS = ("medvlm_r1", "rl_medvqa")
TRAINING = sorted(
    p for paper in PAPERS for p in (RECIPES / paper).glob("*.yaml") if not p.name.startswith(("zero_shot_", "protocol"))
)
ZERO_SHOT = sorted(p for paper in PAPERS for p in (RECIPES / paper).glob("zero_shot_*.yaml"))
CONFIG_CLASS = {"grpo": "MedVLMGRPOConfig", "sft": "MedVLMSFTConfig", "dpo": "MedVLMDPOConfig"}


def raw(path):
    return yaml.safe_load(Path(path).read_text())


def parsed(path):
    """(script_args, training_args, model_args) as `medvlm-trl <command> --config path` parses them (bf16 off on a
    CPU-only machine, where TrainingArguments refuses it; the raw value is checked from the file)."""
    return parse_training_recipe(path, command_for(path), reproduce._cpu_overrides(raw(path)))


@pytest.mark.parametrize("paper", PAPERS)
def test_every_table_row_has_one_recipe_and_every_recipe_is_a_row(paper):
    rows = table_rows(paper, RECIPES)
    files = {p.stem for p in (RECIPES / paper).glob("*.yaml")} - {"protocol"}
    assert {r.key for r in rows if r.recipe is not None} == files
    assert all(r.command in {"eval", "sft", "dpo", "grpo", "computed"} for r in rows)
    computed = [r.key for r in rows if r.command == "computed"]
    assert computed == (["random_guess"] if paper == "medvlm_r1" else [])  # computed from the data, never run


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_training_recipe_parses_into_its_config_class(path):
    script_args, training_args, model_args = parsed(path)
    assert type(training_args).__name__ == CONFIG_CLASS[command_for(path)]
    assert model_args.model_name_or_path.startswith("Qwen/Qwen2-VL-2B")
    # bf16 compute everywhere. Weights: bfloat16 under DeepSpeed (the study's ZeRO-2 keeps float32 master copies);
    # float32 for MedVLM-R1's single-GPU runs, where plain AdamW on bfloat16 weights rounds lr-1e-6 updates away.
    assert raw(path)["bf16"] is True
    assert raw(path)["dtype"] == ("float32" if path.parent.name == "medvlm_r1" else "bfloat16")
    pixels = training_args.max_pixels if hasattr(training_args, "max_pixels") else script_args.max_pixels
    assert pixels == 401408
    # Each paper's own split manifests, and the test split is audited against the training rows.
    split_dir = "splits/medvlm_r1" if path.parent.name == "medvlm_r1" else "splits/pmc_vqa"
    assert script_args.split_file == f"{split_dir}/train.json"
    assert script_args.test_manifests == [f"{split_dir}/test.json"]
    assert script_args.dataset_name == ("huatuo" if path.parent.name == "medvlm_r1" else "pmc_vqa")
    if hasattr(training_args, "packing"):
        assert training_args.packing is False  # TRL cannot pack vision datasets


@pytest.mark.parametrize("path", [p for p in TRAINING if command_for(p) == "grpo"], ids=lambda p: p.stem)
def test_every_grpo_recipe_generates_with_colocated_vllm_and_keeps_the_kl(path):
    _, args, _ = parsed(path)
    assert args.use_vllm is True and args.vllm_mode == "colocate"
    assert args.beta == 0.04  # TRL 1.16's default 0.0 would drop the KL to the initial model
    assert args.loss_type in {"grpo", "dr_grpo"} and args.loss_type != "dapo"  # TRL 1.16's default is dapo
    assert args.reward_funcs[:2] == ["format", "accuracy"]
    assert len(args.reward_weights) == len(args.reward_funcs)


def test_medvlm_r1_grpo_row():
    script_args, args, model_args = parsed(RECIPES / "medvlm_r1" / "grpo_qwen2vl_2b.yaml")
    assert args.num_generations == 6  # G = 6 (the authors' code: 4)
    questions_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps // args.num_generations
    assert questions_per_step == 2  # batch 2, on the single-GPU config the protocol names
    assert load_protocol(RECIPES / "medvlm_r1")["accelerate_config"] == "single_gpu.yaml"
    assert args.max_steps == 300
    assert args.max_steps * questions_per_step == 600  # one pass over the 600 MRI questions
    assert (args.loss_preset, args.loss_type, args.scale_rewards) == ("grpo", "grpo", "group")
    assert args.reward_funcs == ["format", "accuracy"]
    assert args.prompt_template == "r1"


def test_medvlm_r1_sft_row_trains_on_the_grpo_rows_with_the_simple_prompt():
    script_args, args, model_args = parsed(RECIPES / "medvlm_r1" / "sft_qwen2vl_2b.yaml")
    grpo_script, _, grpo_model = parsed(RECIPES / "medvlm_r1" / "grpo_qwen2vl_2b.yaml")
    assert script_args.prompt_template == "simple"
    assert args.completion_only_loss is True and args.assistant_only_loss is False
    assert args.max_length is None  # no truncation of image tokens
    assert script_args.split_file == grpo_script.split_file
    assert model_args.model_name_or_path == grpo_model.model_name_or_path
    assert model_args.use_peft is False


STUDY_GRPO = {
    "grpo_qwen2vl_2b": ("Qwen/Qwen2-VL-2B", ["format", "accuracy"], "grpo"),
    "grpo_qwen2vl_2b_instruct": ("Qwen/Qwen2-VL-2B-Instruct", ["format", "accuracy"], "grpo"),
    "grpo_semantic_qwen2vl_2b_instruct": ("Qwen/Qwen2-VL-2B-Instruct", ["format", "accuracy", "semantic"], "grpo"),
    "grpo_ecr_qwen2vl_2b_instruct": ("Qwen/Qwen2-VL-2B-Instruct", ["format", "accuracy", "semantic", "ecr"], "grpo"),
    "grpo_cwr_qwen2vl_2b_instruct": ("Qwen/Qwen2-VL-2B-Instruct", ["format", "accuracy", "semantic", "cwr"], "grpo"),
    "dr_grpo_qwen2vl_2b_instruct": ("Qwen/Qwen2-VL-2B-Instruct", ["format", "accuracy"], "dr_grpo"),
}


@pytest.mark.parametrize("key", sorted(STUDY_GRPO))
def test_study_rl_rows(key):
    script_args, args, model_args = parsed(RECIPES / "rl_medvqa" / f"{key}.yaml")
    model, rewards, loss = STUDY_GRPO[key]
    assert model_args.model_name_or_path == model
    assert args.reward_funcs == rewards
    # The study's published settings.
    assert args.learning_rate == 1e-6
    assert args.temperature == 1.0
    assert args.num_generations == 8
    assert args.max_completion_length == 700
    assert args.beta == 0.04
    assert args.max_pixels == 401408
    assert args.max_steps == 1500
    assert args.prompt_template == "study"
    assert args.loss_type == loss
    assert args.scale_rewards == ("none" if loss == "dr_grpo" else "group")  # Dr.GRPO: no std scaling
    # Table S2: one question (8 completions, as TRL counts) per GPU per pass, accumulation 2, no gradient
    # checkpointing, logging every step, a checkpoint every 100 steps.
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 2)
    assert args.gradient_checkpointing is False
    assert (args.logging_steps, args.save_strategy, args.save_steps) == (1, "steps", 100)
    if "semantic" in rewards:
        assert args.semantic_judge_model  # a judge is named
    else:
        assert args.semantic_judge_model is None


@pytest.mark.parametrize(
    "key, peft",
    [("sft_qwen2vl_2b_instruct", False), ("sft_lora_qwen2vl_2b_instruct", True), ("dpo_qwen2vl_2b_instruct", False)],
)
def test_study_baselines(key, peft):
    script_args, args, model_args = parsed(RECIPES / "rl_medvqa" / f"{key}.yaml")
    assert model_args.model_name_or_path == "Qwen/Qwen2-VL-2B-Instruct"
    assert model_args.use_peft is peft
    assert script_args.prompt_template == "simple"
    assert args.learning_rate == 1e-6 and args.max_steps == 1500
    assert args.max_length is None
    # Table S2 as printed (SFT and DPO count rows, not completions).
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (1, 2)
    assert args.gradient_checkpointing is False
    assert (args.logging_steps, args.save_strategy, args.save_steps) == (1, "steps", 100)
    if peft:
        assert model_args.lora_target_modules == ["q_proj", "v_proj"] and script_args.merge_lora
    if key.startswith("dpo_"):
        assert args.beta > 0 and args.loss_type == ["sigmoid"]
        assert script_args.rejected_seed == 42
    else:
        assert args.completion_only_loss is True


ZERO_SHOT_MODELS = {
    "medvlm_r1": {
        "zero_shot_qwen2vl_2b": "Qwen/Qwen2-VL-2B-Instruct",
        "zero_shot_qwen2vl_7b": "Qwen/Qwen2-VL-7B-Instruct",
        "zero_shot_qwen2vl_72b": "Qwen/Qwen2-VL-72B-Instruct",
        "zero_shot_huatuogpt_vision_7b": "FreedomIntelligence/HuatuoGPT-Vision-7B",
    },
    "rl_medvqa": {
        "zero_shot_qwen2vl_2b_instruct": "Qwen/Qwen2-VL-2B-Instruct",
        "zero_shot_llava_1_5_7b": "llava-hf/llava-1.5-7b-hf",
        "zero_shot_llama_3_2_11b_vision_instruct": "meta-llama/Llama-3.2-11B-Vision-Instruct",
    },
}


@pytest.mark.parametrize("path", ZERO_SHOT, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_zero_shot_recipe_is_a_valid_eval(path):
    paper = path.parent.name
    protocol = load_protocol(RECIPES / paper)
    recipe = load_eval_recipe(path, protocol)
    args = check_eval_arguments({**eval_settings(protocol), **recipe, "out": "x"}, str(path))
    assert args.model == ZERO_SHOT_MODELS[paper][path.stem]
    # MedVLM-R1's zero-shot rows use the baselines' simple prompt; the study's, its own think/answer prompt.
    assert args.prompt == ("simple" if paper == "medvlm_r1" else "study")


def _study_processes() -> int:
    return yaml.safe_load((RECIPES / "accelerate" / "zero2.yaml").read_text())["num_processes"]


@pytest.mark.parametrize("key", sorted(STUDY_GRPO))
def test_study_rl_rows_take_eight_questions_a_step_on_the_studys_four_gpus(key, monkeypatch):
    """TRL's own GRPOConfig checks, run at the world size of the study's accelerate config (4x A100): 8 questions of 8
    completions per optimizer step, generated once per step, as R1-V's batch 1 x accumulation 2 on 4 GPUs gives."""
    from medvlm_trl.configs import MedVLMGRPOConfig

    processes = _study_processes()
    assert processes == 4  # "4x A100 80GB"
    monkeypatch.setattr(MedVLMGRPOConfig, "world_size", property(lambda self: processes))
    _, args, _ = parsed(RECIPES / "rl_medvqa" / f"{key}.yaml")
    assert args.steps_per_generation == args.gradient_accumulation_steps == 2
    assert args.generation_batch_size == 64  # 8 per device x 4 processes x 2 passes
    assert args.generation_batch_size % args.num_generations == 0
    assert args.generation_batch_size // args.num_generations == 8  # questions per optimizer step


@pytest.mark.parametrize("processes", [1, 2, 4, 8])
def test_study_rl_batch_comment_holds_on_other_gpu_counts(processes, monkeypatch):
    """The recipes' advice: on N GPUs, per_device_train_batch_size 32 / N keeps 8 questions a step."""
    from medvlm_trl.configs import MedVLMGRPOConfig

    monkeypatch.setattr(MedVLMGRPOConfig, "world_size", property(lambda self: processes))
    path = RECIPES / "rl_medvqa" / "grpo_qwen2vl_2b_instruct.yaml"
    overrides = [*reproduce._cpu_overrides(raw(path)), "--per_device_train_batch_size", str(32 // processes)]
    _, args, _ = parse_training_recipe(path, "grpo", overrides)
    assert args.generation_batch_size // args.num_generations == 8


def test_trl_refuses_the_study_batch_read_as_completions_on_one_gpu(monkeypatch):
    """Why the recipes do not write Table S2's "batch size per device 1" literally: TRL counts completions, and on one
    process 1 x 2 completions cannot hold a group of 8 (on 4 GPUs it would pass, but train 1 question a step)."""
    from medvlm_trl.configs import MedVLMGRPOConfig

    monkeypatch.setattr(MedVLMGRPOConfig, "world_size", property(lambda self: 1))
    path = RECIPES / "rl_medvqa" / "grpo_qwen2vl_2b_instruct.yaml"
    overrides = [*reproduce._cpu_overrides(raw(path)), "--per_device_train_batch_size", "1"]
    with pytest.raises(ValueError, match="divisible by num_generations"):
        parse_training_recipe(path, "grpo", overrides)


def test_protocols_name_each_papers_test_split():
    r1 = load_protocol(RECIPES / "medvlm_r1")
    assert (r1["dataset"], r1["split"]) == ("huatuo", "splits/medvlm_r1/test.json")
    study = load_protocol(RECIPES / "rl_medvqa")
    assert (study["dataset"], study["split"]) == ("pmc_vqa", "splits/pmc_vqa/test.json")
    assert study["accelerate_config"] == "zero2.yaml"  # the study's DeepSpeed ZeRO-2
    assert set(study["metrics"].split(",")) == {"similarity", "perplexity", "thinking_reward", "token_length"}
    for protocol in (r1, study):
        assert (RECIPES / "accelerate" / protocol["accelerate_config"]).is_file()


# ---------------------------------------------------------------------------------------------------------------------
# Bad recipes are refused with the key named


def _copy(tmp_path, paper="medvlm_r1"):
    import shutil

    shutil.copytree(RECIPES, tmp_path / "recipes")
    return tmp_path / "recipes" / paper


def test_unknown_training_key_is_refused_with_a_hint(tmp_path):
    folder = _copy(tmp_path)
    path = folder / "grpo_qwen2vl_2b.yaml"
    path.write_text(path.read_text() + "num_generation: 6\n")
    with pytest.raises(ReproduceError, match="num_generation.*did you mean 'num_generations'"):
        reproduce.make_plan("medvlm_r1", "tiny", tmp_path / "runs", tmp_path / "recipes")


def test_eval_recipe_must_say_kind_and_may_not_move_the_test_split(tmp_path):
    folder = _copy(tmp_path)
    protocol = load_protocol(folder)
    path = folder / "zero_shot_qwen2vl_2b.yaml"
    path.write_text("model: Qwen/Qwen2-VL-2B-Instruct\nprompt: simple\n")
    with pytest.raises(ReproduceError, match="kind: eval"):
        load_eval_recipe(path, protocol)
    path.write_text("kind: eval\nmodel: m\nprompt: simple\nsplit: other.json\n")
    with pytest.raises(ReproduceError, match="'split'"):
        load_eval_recipe(path, protocol)
    path.write_text("kind: eval\nmodel: m\nprompt: chatty\n")
    with pytest.raises(ReproduceError, match="chatty"):
        check_eval_arguments({**eval_settings(protocol), **load_eval_recipe(path, protocol)}, str(path))


def test_a_recipe_name_must_say_its_command(tmp_path):
    with pytest.raises(ReproduceError, match="must start with"):
        command_for(tmp_path / "ppo_qwen2vl_2b.yaml")
    folder = _copy(tmp_path)
    (folder / "sft_qwen2vl_2b.yaml").rename(folder / "finetune_qwen2vl_2b.yaml")
    with pytest.raises(ReproduceError):
        table_rows("medvlm_r1", tmp_path / "recipes")


# ---------------------------------------------------------------------------------------------------------------------
# The same rows on the newer bases: recipes/<paper>/<family>/ (medvlm_trl.tiny_families)

FAMILY_MODELS = {
    "qwen2_5_vl": ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5vl_3b_instruct"),
    "qwen3_vl": ("Qwen/Qwen3-VL-2B-Instruct", "qwen3vl_2b_instruct"),
    "qwen3_5": ("Qwen/Qwen3.5-0.8B", "qwen3_5_0_8b"),
}
# Each family's rows, and the paper row each one repeats.
FAMILY_ROWS = {
    "medvlm_r1": {"grpo": "grpo_qwen2vl_2b", "sft": "sft_qwen2vl_2b", "zero_shot": "zero_shot_qwen2vl_2b"},
    "rl_medvqa": {"dr_grpo": "dr_grpo_qwen2vl_2b_instruct", "zero_shot": "zero_shot_qwen2vl_2b_instruct"},
}
# What a family's recipe may change against the paper's row: the model, where it writes, and (Qwen3.5) the template.
CHOSEN_FOR_THE_BASE = {"model_name_or_path", "model", "output_dir", "chat_template_kwargs"}
FAMILY_RECIPES = sorted(p for paper in PAPERS for fam in FAMILY_MODELS for p in (RECIPES / paper / fam).glob("*.yaml"))


def _family_row(path):
    """(paper, family, row kind, the paper's recipe it repeats) of a family recipe."""
    paper, family = path.parent.parent.name, path.parent.name
    kind = next(k for k in sorted(FAMILY_ROWS[paper], key=len, reverse=True) if path.stem.startswith(k + "_"))
    return paper, family, kind, RECIPES / paper / f"{FAMILY_ROWS[paper][kind]}.yaml"


@pytest.mark.parametrize("paper", PAPERS)
@pytest.mark.parametrize("family", sorted(FAMILY_MODELS))
def test_every_family_has_each_row_once(paper, family):
    _, stem = FAMILY_MODELS[family]
    files = sorted(p.name for p in (RECIPES / paper / family).glob("*.yaml"))
    assert files == sorted(f"{kind}_{stem}.yaml" for kind in FAMILY_ROWS[paper])


@pytest.mark.parametrize("path", FAMILY_RECIPES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.stem}")
def test_family_recipe_is_the_papers_row_on_another_model(path):
    """Every value but the model (and Qwen3.5's template switch) is the paper row's; it parses as its command does."""
    paper, family, kind, source = _family_row(path)
    mine, theirs = raw(path), raw(source)
    assert {k: v for k, v in mine.items() if k not in CHOSEN_FOR_THE_BASE} == {
        k: v for k, v in theirs.items() if k not in CHOSEN_FOR_THE_BASE
    }
    model = mine.get("model_name_or_path", mine.get("model"))
    assert model == FAMILY_MODELS[family][0]
    # Qwen3.5's template opens <think> in the prompt unless told otherwise; the other families have no such switch.
    # (SFT: TRL 1.16's SFTTrainer takes template arguments only per example, so its row keeps the template's default.)
    closed = family == "qwen3_5" and kind != "sft"
    assert mine.get("chat_template_kwargs") == ({"enable_thinking": False} if closed else None)
    text = path.read_text()
    assert "paper" in text.split("model_name_or_path")[0] or "study" in text  # the comments say whose values
    if kind == "zero_shot":
        protocol = load_protocol(RECIPES / paper)
        args = check_eval_arguments({**eval_settings(protocol), **load_eval_recipe(path, protocol), "out": "x"}, "x")
        assert args.model == model
    else:
        script_args, args, model_args = parsed(path)
        assert model_args.model_name_or_path == model
        assert type(args).__name__ == CONFIG_CLASS[command_for(path)]
        assert args.output_dir == f"runs/{paper}/full/models/{family}/{path.stem}"
        if command_for(path) == "grpo":
            assert args.use_vllm is True and args.beta == 0.04
            assert args.loss_type == ("dr_grpo" if kind == "dr_grpo" else "grpo")


def test_family_recipes_are_not_table_rows():
    """The papers' tables keep the papers' rows: a family folder adds no row to `reproduce-table1`."""
    for paper in PAPERS:
        keys = {r.key for r in table_rows(paper, RECIPES)}
        assert not keys & {p.stem for p in FAMILY_RECIPES}
