"""`bench/grpo_step.py` (issue 9): the GRPO step benchmark of MedVLM-R1's setting (2 questions x G=6, fixed-length
completions) runs on a CPU with the tiny model and prints its figures in a parseable form; the 2B config it builds is
Qwen2-VL-2B's; the padded-tokenizer build trains; the memory estimate adds up as its docstring says; bad requests end
in one line."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "grpo_step.py"
LORA_RECIPE = ROOT / "recipes" / "rl_medvqa" / "sft_lora_qwen2vl_2b_instruct.yaml"
GRPO_RECIPE = ROOT / "recipes" / "medvlm_r1" / "grpo_qwen2vl_2b.yaml"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("grpo_step_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args, timeout=600):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line[len("RESULT ") :]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return proc.stdout, results


def varied_reward(completion_ids, **kwargs):
    """Test-only reward that differs between completions of a random model, so that a step has a gradient."""
    return [float(sum(ids) % 7) for ids in completion_ids]


def recipe(path):
    return yaml.safe_load(path.read_text())


def test_config_is_qwen2_vl_2b(bench):
    """The values issue 9 lists from Qwen/Qwen2-VL-2B-Instruct's config.json, and its published size (2.21B)."""
    config = bench.load_config_2b()
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.intermediate_size, text.num_hidden_layers) == (1536, 8960, 28)
    assert (text.num_attention_heads, text.num_key_value_heads, text.vocab_size) == (12, 2, 151936)
    assert text.rope_parameters["mrope_section"] == [16, 24, 24] and text.rope_parameters["rope_theta"] == 1e6
    assert (text.max_position_embeddings, text.rms_norm_eps, config.tie_word_embeddings) == (32768, 1e-6, True)
    vision_values = {k: getattr(vision, k) for k in ("depth", "embed_dim", "hidden_size", "mlp_ratio", "num_heads")}
    assert vision_values == {"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "mlp_ratio": 4, "num_heads": 16}
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    assert (config.image_token_id, config.video_token_id) == (151655, 151656)
    assert (config.vision_start_token_id, config.vision_end_token_id) == (151652, 151653)
    from transformers import Qwen2VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    params = sum(p.numel() for p in bench.unique_params(model))
    assert round(params / 1e9, 2) == 2.21  # tied LM head counted once
    assert model.lm_head.weight is model.get_input_embeddings().weight


@pytest.mark.slow
def test_cpu_smoke_tiny_full(tmp_path):
    """Three steps on the tiny model (one warm-up): every completion has exactly the fixed length, the split adds up,
    the figures are printed for people and as one RESULT line, and the files hold the same run."""
    out_json, out_md = tmp_path / "runs.json", tmp_path / "runs.md"
    argv = "--tiny --backend hf --steps 2 --warmup 1 --completion-length 8 --image-size 224x224".split()
    stdout, results = run_script(*argv, "--json", str(out_json), "--markdown", str(out_md))
    assert len(results) == 1, stdout
    r = results[0]
    grpo = recipe(GRPO_RECIPE)
    s = r["settings"]
    assert (r["backend"], r["finetuning"]) == ("HF generate", "full")
    assert s["num_generations"] == grpo["num_generations"] == 6
    assert s["completions_per_step"] == grpo["per_device_train_batch_size"] == 12 and s["prompts_per_step"] == 2
    assert (s["beta"], s["loss_type"]) == (grpo["beta"], "grpo")
    # 224x224 -> 8x8 tokens of 28x28 pixels
    assert s["image_tokens_per_prompt"] == 64 and s["prompt_tokens"] > 64
    assert len(r["step_s"]) == len(r["generation_s"]) == len(r["training_s"]) == 2  # the warm-up is not counted
    assert r["completion_length_min"] == r["completion_length_max"] == 8
    assert r["completion_tokens_per_step"] == [12 * 8, 12 * 8]
    for step, gen, train in zip(r["step_s"], r["generation_s"], r["training_s"]):
        assert 0 < gen < step and train == pytest.approx(step - gen, abs=1e-3)
    assert r["generated_tokens_per_s"] == pytest.approx(2 * 96 / sum(r["generation_s"]), rel=0.01)
    assert r["median_step_s"] == pytest.approx(sorted(r["step_s"])[0] / 2 + sorted(r["step_s"])[1] / 2, abs=1e-3)
    assert r["trainable_params"] == r["params"] > 0
    assert r["peak_memory"]["kind"] == ("cuda" if torch.cuda.is_available() else "cpu_rss")
    assert r["meets_goal"] is None  # the tiny model says nothing about the 6 s goal
    assert r["memory_estimate"]["inputs"]["reference_model"] is True  # full fine-tuning with beta > 0
    assert "seconds per step (median):" in stdout and "generated tokens per second:" in stdout
    assert "memory ESTIMATE (analytic, not measured)" in stdout
    assert json.loads(out_json.read_text()) == results
    table = out_md.read_text().splitlines()
    assert table[0].startswith("| backend |") and table[2].startswith("| HF generate | full | tiny-qwen2-vl")


@pytest.mark.slow
def test_cpu_smoke_tiny_lora(bench, tiny_vlm):
    """`--lora` trains exactly the adapters the project's LoRA recipe names, and no reference model is kept."""
    from transformers import AutoModelForImageTextToText

    argv = "--tiny --lora --backend hf --steps 1 --warmup 0 --completion-length 4 --image-size 112x112".split()
    _, results = run_script(*argv)
    (r,) = results
    lora = recipe(LORA_RECIPE)
    assert r["finetuning"] == "lora"
    assert r["lora"] == {key: lora[key] for key in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")}
    base = AutoModelForImageTextToText.from_pretrained(tiny_vlm)
    expected = 0
    for name, module in base.named_modules():
        if name.rsplit(".", 1)[-1] in lora["lora_target_modules"]:
            expected += lora["lora_r"] * (module.in_features + module.out_features)
    assert r["trainable_params"] == expected > 0
    assert r["params"] == sum(p.numel() for p in base.parameters()) + expected
    assert r["memory_estimate"]["inputs"]["reference_model"] is False  # the base model with adapters off
    assert r["completion_length_min"] == r["completion_length_max"] == 4


@pytest.mark.slow
def test_padded_build_trains(bench, tmp_path):
    """The random build's recipe on a shrunken 2B config: tokenizer padded to the real vocabulary, vision-token ids
    taken from it, the run's pixel bounds saved; a GRPO step with the benchmark's generation kwargs trains, every
    completion has the fixed length, none samples a vision token, and ids past the tiny vocabulary decode."""
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from medvlm_trl import MedVLMGRPOConfig
    from medvlm_trl.data.prompts import add_prompt
    from medvlm_trl.tiny import tiny_vlm_path

    data = json.loads(bench.CONFIG_2B.read_text())
    data.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    data["rope_scaling"] = {"type": "mrope", "mrope_section": [2, 3, 3]}
    data["vision_config"].update(depth=1, embed_dim=32, hidden_size=64, num_heads=4)
    small = tmp_path / "config.json"
    small.write_text(json.dumps(data))
    out = bench.build_random_2b(tmp_path / "model", 3136, 12544, seed=0, config_path=small)
    processor = AutoProcessor.from_pretrained(out, padding_side="left")
    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    tokenizer = processor.tokenizer
    tiny_size = len(AutoProcessor.from_pretrained(tiny_vlm_path()).tokenizer)
    assert len(tokenizer) == model.config.text_config.vocab_size == 151936
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>") < tiny_size
    assert processor.image_processor.size["longest_edge"] == 12544
    assert tokenizer.decode([151935]) == f"<|bench_pad_{151935 - tiny_size}|>"

    rows = bench.make_rows(2, (112, 112), tmp_path / "images", seed=0)
    dataset = Dataset.from_list([{**row, **add_prompt(row, "r1")} for row in rows])
    length = 6
    vision_ids = bench.vision_token_ids(model.config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = bench.timed_trainer_class()(
        model=model,
        reward_funcs=[varied_reward],
        args=MedVLMGRPOConfig(
            output_dir=str(tmp_path / "out"),
            per_device_train_batch_size=4,
            num_generations=2,
            max_completion_length=length,
            generation_kwargs={"min_new_tokens": length, "suppress_tokens": vision_ids},
            max_steps=1,
            learning_rate=1e-3,
            loss_preset="grpo",
            bf16=False,
            report_to="none",
            save_strategy="no",
            max_pixels=12544,
        ),
        train_dataset=dataset,
        processing_class=processor,
    )
    trainer.train()
    assert trainer.generated_lengths == [[length] * 4]
    assert len(trainer.generation_times) == 1 and trainer.generation_times[0] > 0
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


def test_memory_estimate_adds_up(bench):
    """Full fine-tuning: weights + gradients + two AdamW moments + a reference copy, in the weights' dtype; LoRA:
    float32 adapters, no reference; checkpointing keeps less than storing every layer's working set."""
    text = {"layers": 2, "hidden": 8, "intermediate": 16}
    vision = {"layers": 1, "dim": 4, "mlp": 16}
    common = dict(
        params=10**9,
        text=text,
        vision=vision,
        rows=10**6,
        prompt_tokens=3,
        completion_tokens=5,
        image_patches=4,
        vllm_utilization=0.5,
        target_gb=80.0,
    )
    full_ft = dict(
        trainable=10**9,
        weight_bytes=2,
        trainable_bytes=2,
        reference_model=True,
        lora=False,
        gradient_checkpointing=True,
        **common,
    )
    full = bench.memory_estimate(**full_ft)
    c = full["components_gb"]
    assert c["policy weights"] == c["gradients"] == c["reference model"] == 2.0
    assert c["AdamW moments (2 per trained parameter)"] == 4.0
    # 10**6 rows x (3 + 5) tokens: 2 layer inputs of 8 values + one layer's (4 x 8 + 3 x 16), 2 bytes each
    assert c["activations, language model (rough)"] == round(8 * 10**6 * (2 * 8 + 4 * 8 + 3 * 16) * 2 / 1e9, 2) > 1
    # 10**6 rows x 4 patches: 1 layer input of 4 values + one layer's (4 x 4 + 16)
    assert c["activations, vision tower (rough)"] == round(4 * 10**6 * (4 + 4 * 4 + 16) * 2 / 1e9, 2) > 0.2
    assert full["vllm_reserved_gb"] == 40.0
    assert full["total_vllm_colocate_gb"] == pytest.approx(full["total_hf_gb"] + 40.0, abs=0.02)
    ten_billion = {**full_ft, "trainable": 10**10, "params": 10**10}
    assert full["fits_target_hf"] and not bench.memory_estimate(**ten_billion)["fits_target_hf"]  # 20+20+40+20 > 80
    lora = bench.memory_estimate(
        **{**full_ft, "trainable": 10**7, "trainable_bytes": 4, "reference_model": False, "lora": True}
    )
    c = lora["components_gb"]
    assert c["policy weights"] == 2.04 and c["gradients"] == 0.04 and c["reference model"] == 0
    unchecked = bench.memory_estimate(**{**full_ft, "gradient_checkpointing": False})["components_gb"]
    checked = bench.memory_estimate(**full_ft)["components_gb"]
    assert unchecked["activations, language model (rough)"] > checked["activations, language model (rough)"]


def test_estimate_of_the_2b_setting(bench):
    """`--estimate-only` from the architecture alone: LoRA on q_proj/v_proj of the 28 decoder layers adds
    28 x r x ((1536 + 1536) + (1536 + 256)) parameters; full fine-tuning keeps a reference copy in the recipe's
    float32, LoRA none; the prompt holds the 512 image tokens of the study's max_pixels."""
    args = bench.make_parser().parse_args(["--estimate-only"])
    full = bench.estimate_only(args)["memory_estimate"]
    lora_args = bench.make_parser().parse_args(["--estimate-only", "--lora"])
    lora = bench.estimate_only(lora_args)["memory_estimate"]
    r = recipe(LORA_RECIPE)["lora_r"]
    assert lora["inputs"]["trainable_params"] == 28 * r * ((1536 + 1536) + (1536 + 256))
    assert full["inputs"]["trainable_params"] == full["inputs"]["params"]
    assert full["inputs"]["weight_bytes"] == 4  # the recipe's dtype: float32 master weights, bf16 autocast
    assert full["components_gb"]["reference model"] == full["components_gb"]["policy weights"] > 4
    assert lora["components_gb"]["reference model"] == 0 and lora["total_hf_gb"] < full["total_hf_gb"]
    assert full["inputs"]["prompt_tokens"] > 512 and full["inputs"]["image_patches_per_row"] == 4 * 512
    assert full["inputs"]["completion_tokens"] == 1024 and full["inputs"]["rows_per_forward"] == 12
    assert (full["target_gb"], lora["target_gb"]) == (80.0, 24.0)
    assert "float32_weights" not in full  # already float32: no float32 alternative to print
    bf16 = bench.estimate_only(bench.make_parser().parse_args(["--estimate-only", "--dtype", "bfloat16"]))
    bf16 = bf16["memory_estimate"]
    assert bf16["inputs"]["weight_bytes"] == 2
    assert bf16["float32_weights"]["total_hf_gb"] == full["total_hf_gb"] > bf16["total_hf_gb"]


def test_backend_choice(bench):
    assert bench.choose_backends("auto", cuda=True, has_vllm=True) == (["hf", "vllm"], None)
    assert bench.choose_backends("auto", cuda=False, has_vllm=True) == (["hf"], "vLLM colocate skipped: no CUDA device")
    assert bench.choose_backends("auto", cuda=True, has_vllm=False)[1] == "vLLM colocate skipped: vllm is not installed"
    assert bench.choose_backends("hf", cuda=False, has_vllm=False) == (["hf"], None)
    with pytest.raises(bench.BenchError, match="vllm is not installed"):
        bench.choose_backends("vllm", cuda=True, has_vllm=False)


def test_child_argv_replaces_backend_and_outputs(bench):
    argv = ["--steps", "3", "--backend", "auto", "--json=x.json", "--markdown", "t.md", "--lora"]
    assert bench.child_argv(argv, "vllm", "c.json") == [
        "--steps",
        "3",
        "--lora",
        "--backend",
        "vllm",
        "--json",
        "c.json",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tiny", "--image-size", "big"], "--image-size must be WIDTHxHEIGHT"),
        (["--tiny", "--image-size", "20x400"], "at least 28x28"),
        (["--tiny", "--steps", "0"], "need --steps >= 1"),
        (["--tiny", "--backend", "vllm"], "--backend vllm cannot run here"),
        (["--tiny", "--recipe", "no/such.yaml"], "recipe not found: no/such.yaml"),
        (["--model", "no/such/model/folder", "--backend", "hf"], "no/such/model/folder"),
    ],
)
def test_bad_requests_end_in_one_line(bench, monkeypatch, capsys, argv, message):
    monkeypatch.setattr(bench, "vllm_importable", lambda: False)
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("grpo_step: error:") and message in err and "Traceback" not in err
