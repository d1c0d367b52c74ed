"""Seconds per GRPO step at MedVLM-R1's setting, the generation / training split, tokens per second and peak memory.

MedVLM-R1 (Pan et al., section 4.1) trains Qwen2-VL-2B with GRPO for 300 steps of 2 questions x G=6 completions and
reports about 4 hours on two A100s, some 48 s a step. Issue 9's goal: 6 s a step or less on one H100 with vLLM
colocated, completions up to 1024 tokens. This script runs that step with the project's own trainer, built as
`medvlm-trl grpo` builds it (`medvlm_trl.grpo`: the recipe parsed by the same TrlParser, the same model loader, reward
registry and `MedVLMGRPOTrainer`), from `recipes/medvlm_r1/grpo_qwen2vl_2b.yaml`, with only these changes:

- model: Qwen2-VL-2B's architecture (`bench/qwen2_vl_2b_config.json`, the public config) with random weights, built
  once and cached; `--model PATH` takes real weights instead, `--tiny` the project's tiny Qwen2-VL (for CPUs).
  No 2B tokenizer can be downloaded here, so the random build uses the tiny tokenizer padded with ordinary added
  tokens up to the real vocabulary (151936), so that every sampled id decodes; embedding and LM head have the real
  shape. Its special-token ids are the tiny tokenizer's, not 151643-151656: the cost is the same.
- every completion is exactly `--completion-length` tokens (default 1024), the worst case: end-of-sequence is
  forbidden until then (`min_new_tokens` for HF generate, `min_tokens` for vLLM's SamplingParams; TRL 1.16 passes
  `generation_kwargs` to both). Vision tokens are never sampled (a random model would otherwise emit an image token
  now and then, which no real model does and which breaks the policy's forward pass).
- images: random RGB noise of `--image-size` pixels (default 896x448 = 401408 pixels = 512 image tokens, exactly
  the RL-MedVQA study's `max_pixels`), questions and options from the embedded sample set.
- `--lora`: the project's LoRA settings (`recipes/rl_medvqa/sft_lora_qwen2vl_2b_instruct.yaml`: r, alpha, dropout,
  target modules) instead of full fine-tuning; the KL reference is then the base model with adapters off.

    python bench/grpo_step.py --tiny --steps 3                     # CPU: tiny model, HF generation
    python bench/grpo_step.py --steps 5                             # GPU: 2B architecture, HF and (if installed) vLLM
    python bench/grpo_step.py --steps 5 --lora --memory-cap-gb 24   # GPU: LoRA, capped as on a 24 GB card
    python bench/grpo_step.py --estimate-only                       # analytic memory estimate, no training

The first `--warmup` steps are run but not counted; the figures are medians over `--steps` steps. "generation" is
the wall time of TRL's generate call (`GRPOTrainer._generate_single_turn`; with vLLM it includes the weight sync,
also shown on its own), "training" is the rest of the step (image preparation, rewards, reference and policy
forward passes, backward, optimizer). Each backend runs in its own process, so peak memory is its own. The last line
of a run is `RESULT {json}`; `--json` also writes all runs to a file, `--markdown` a table.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The analytic memory estimate lives beside this script; found from here also when the file is loaded by path (tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from grpo_memory import (  # noqa: E402, F401 (importable from here, as before)
    FULL_TARGET_GB,
    GB,
    LORA_TARGET_GB,
    architecture,
    estimate_for,
    lora_param_count,
    memory_estimate,
    unique_params,
)
from grpo_report import (  # noqa: E402, F401 (importable from here, as before)
    GOAL_STEP_S,
    PAPER_STEP_S,
    format_estimate,
    format_run,
    render_markdown,
)
from random_2b import (  # noqa: E402, F401 (importable from here, as before)
    CONFIG_2B,
    VISION_TOKEN_KEYS,
    BenchError,
    build_random_2b,
    load_config_2b,
    padded_processor,
    random_2b_path,
    set_pixel_bounds,
    vision_token_ids,
)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_RECIPE = REPO_ROOT / "recipes" / "medvlm_r1" / "grpo_qwen2vl_2b.yaml"
DEFAULT_LORA_RECIPE = REPO_ROOT / "recipes" / "rl_medvqa" / "sft_lora_qwen2vl_2b_instruct.yaml"
LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")

RESULT_PREFIX = "RESULT "
BACKENDS = ("hf", "vllm")


# ---------------------------------------------------------------------------------------------------------------------
# Settings


def parse_image_size(text: str) -> tuple[int, int]:
    """`"896x448"` -> (896, 448): width x height in pixels."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        raise BenchError(f"--image-size must be WIDTHxHEIGHT in pixels, e.g. 896x448, got {text!r}") from err
    if width < 28 or height < 28:
        raise BenchError(f"--image-size must be at least 28x28 (one image token), got {text!r}")
    return width, height


def lora_settings(recipe: str | os.PathLike) -> dict[str, Any]:
    """The LoRA keys (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_target_modules`) of a project recipe."""
    import yaml

    with open(recipe) as fh:
        values = yaml.safe_load(fh) or {}
    missing = [key for key in LORA_KEYS if key not in values]
    if missing:
        raise BenchError(f"{recipe}: LoRA recipe lacks {', '.join(missing)}")
    return {key: values[key] for key in LORA_KEYS}


def vllm_importable() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_backends(requested: str, cuda: bool, has_vllm: bool) -> tuple[list[str], str | None]:
    """Backends to run and, when vLLM is left out of `auto`, why. An explicit `vllm` that cannot run is an error."""
    if requested == "hf":
        return ["hf"], None
    why_not = None if (cuda and has_vllm) else ("no CUDA device" if not cuda else "vllm is not installed")
    if requested == "vllm":
        if why_not:
            raise BenchError(f"--backend vllm cannot run here: {why_not} (vLLM colocate needs both)")
        return ["vllm"], None
    return (["hf", "vllm"], None) if why_not is None else (["hf"], f"vLLM colocate skipped: {why_not}")


def recipe_overrides(
    args: argparse.Namespace, model_path: str, output_dir: str, backend: str, cuda: bool, keep_dtype: bool = False
) -> list:
    """Command-line overrides of the recipe, in `medvlm-trl grpo` syntax, for one benchmark run. Without CUDA the
    run trains in float32 (bf16 training needs a GPU here); `keep_dtype` keeps the recipe's dtype (for estimates)."""
    argv = [
        "--config",
        str(args.recipe),
        "--model_name_or_path",
        model_path,
        "--output_dir",
        output_dir,
        "--max_steps",
        str(args.warmup + args.steps),
        "--max_completion_length",
        str(args.completion_length),
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--logging_steps",
        "1",
        "--log_completions",
        "false",
        "--disable_tqdm",
        "true",
        "--seed",
        str(args.seed),
        "--use_vllm",
        "true" if backend == "vllm" else "false",
    ]
    if backend == "vllm":
        argv += ["--vllm_mode", "colocate"]
        if args.vllm_gpu_memory_utilization is not None:
            argv += ["--vllm_gpu_memory_utilization", str(args.vllm_gpu_memory_utilization)]
    if not cuda:
        argv += ["--bf16", "false"] + ([] if keep_dtype else ["--dtype", "float32"])
    for flag, value in (
        ("--min_pixels", args.min_pixels),
        ("--max_pixels", args.max_pixels),
        ("--num_generations", args.generations),
        ("--attn_implementation", args.attn_implementation),
        ("--dtype", args.dtype),  # after the CPU default above, so an explicit choice wins
    ):
        if value is not None:
            argv += [flag, str(value)]
    if args.prompts_per_step is not None:
        generations = args.generations if args.generations is not None else recipe_value(args.recipe, "num_generations")
        argv += ["--per_device_train_batch_size", str(args.prompts_per_step * int(generations))]
    if args.lora:
        lora = lora_settings(args.lora_recipe)
        argv += ["--use_peft", "true", "--lora_r", str(lora["lora_r"]), "--lora_alpha", str(lora["lora_alpha"])]
        argv += ["--lora_dropout", str(lora["lora_dropout"]), "--lora_target_modules", *lora["lora_target_modules"]]
    return argv


def recipe_value(recipe: str | os.PathLike, key: str) -> Any:
    import yaml

    with open(recipe) as fh:
        values = yaml.safe_load(fh) or {}
    if key not in values:
        raise BenchError(f"{recipe} does not set {key}")
    return values[key]


# ---------------------------------------------------------------------------------------------------------------------
# Data: sample-set questions, random images at the pixel bound


def make_rows(n: int, image_size: tuple[int, int], out_dir: Path, seed: int) -> list[dict]:
    """`n` contract rows: the sample set's questions and options, each with its own random-noise PNG."""
    import numpy as np
    from PIL import Image

    from medvlm_trl.data.sample import load_sample

    base = load_sample("train")
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    width, height = image_size
    for i in range(n):
        path = out_dir / f"bench-{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(path)
        row = dict(base[i % len(base)])
        row.update(id=f"bench-{i}", image=str(path), source="bench")
        rows.append(row)
    return rows


def prompt_shape(processor, row: dict, template: str, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(prompt tokens, image patches) of one row as the trainer builds it: its image resized once to the bounds."""
    from medvlm_trl.data.images import image_factor, prepare_image
    from medvlm_trl.data.prompts import add_prompt

    factor = image_factor(processor)
    image = prepare_image(row["image"], min_pixels=min_pixels, max_pixels=max_pixels, row_id=row["id"], factor=factor)
    text = processor.apply_chat_template(
        add_prompt(row, template)["prompt"], add_generation_prompt=True, tokenize=False
    )
    encoded = processor(text=[text], images=[image], return_tensors="pt")
    return int(encoded["input_ids"].shape[1]), int(encoded["image_grid_thw"].prod(dim=-1).sum())


# ---------------------------------------------------------------------------------------------------------------------
# One run


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_trainer_class():
    """`MedVLMGRPOTrainer` with TRL's generate call timed (GPU work synchronised before and after)."""
    from medvlm_trl.trainer import MedVLMGRPOTrainer

    class TimedGRPOTrainer(MedVLMGRPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.generation_times: list[float] = []
            self.generated_lengths: list[list[int]] = []
            self.sync_times: list[float] = []
            if getattr(self, "use_vllm", False):
                engine = self.vllm_generation
                original = engine.sync_weights

                def timed_sync():
                    sync()
                    start = time.perf_counter()
                    original()
                    sync()
                    self.sync_times.append(time.perf_counter() - start)

                engine.sync_weights = timed_sync

        def _generate_single_turn(self, *args, **kwargs):
            sync()
            start = time.perf_counter()
            completion_ids, logprobs = super()._generate_single_turn(*args, **kwargs)
            sync()
            self.generation_times.append(time.perf_counter() - start)
            self.generated_lengths.append([len(ids) for ids in completion_ids])
            return completion_ids, logprobs

    return TimedGRPOTrainer


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time from step begin to step end: generation, rewards, forward, backward, optimizer."""

        def __init__(self):
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.times.append(time.perf_counter() - self._start)

    return StepTimer()


def device_description() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return {"kind": "cuda", "name": torch.cuda.get_device_name(), "memory_gb": round(total / GB, 1)}
    return {
        "kind": "cpu",
        "name": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def peak_memory() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return {
            "kind": "cuda",
            "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / GB, 2),
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / GB, 2),
            "device_used_at_end_gb": round((total - free) / GB, 2),
        }
    # ru_maxrss is in KiB on Linux
    return {"kind": "cpu_rss", "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB, 3)}


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run_one(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    """Build the model, the recipe's trainer and the rows; train `warmup + steps` steps; return the figures."""
    import torch
    import transformers
    import trl
    from transformers import PrinterCallback
    from trl import get_peft_config

    from medvlm_trl.grpo import build_dataset, build_reward_funcs, load_model_and_processor, parse_args

    cuda = torch.cuda.is_available()
    if args.memory_cap_gb is not None:
        if not cuda:
            raise BenchError("--memory-cap-gb caps GPU memory; there is no CUDA device here")
        total = torch.cuda.mem_get_info()[1]
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gb * GB / total))
        if backend == "vllm" and args.vllm_gpu_memory_utilization is None:
            # vLLM reserves a share of the whole device; keep it the recipe's share of the capped memory instead.
            util = float(recipe_value(args.recipe, "vllm_gpu_memory_utilization"))
            args.vllm_gpu_memory_utilization = round(util * args.memory_cap_gb * GB / total, 4)
    work = Path(tempfile.mkdtemp(prefix="grpo_step-"))
    try:
        # Parse once for the pixel bounds, which the random build's processor must share.
        probe_args = parse_args(recipe_overrides(args, "unset", str(work / "out"), backend, cuda))[1]
        min_pixels, max_pixels = probe_args.min_pixels, probe_args.max_pixels
        if args.tiny:
            from medvlm_trl.tiny import tiny_vlm_path

            model_path, model_name = str(tiny_vlm_path()), "tiny-qwen2-vl (random weights)"
        elif args.model:
            model_path, model_name = args.model, args.model
        else:
            model_path = str(random_2b_path(min_pixels, max_pixels, args.seed))
            model_name = "Qwen2-VL-2B architecture (random weights)"
        script_args, training_args, model_args = parse_args(
            recipe_overrides(args, model_path, str(work / "out"), backend, cuda)
        )
        reward_funcs = build_reward_funcs(training_args)
        model, processor = load_model_and_processor(model_args, training_args)
        set_pixel_bounds(processor, min_pixels, max_pixels)
        length = training_args.max_completion_length
        vision_ids = vision_token_ids(model.config)
        if backend == "vllm":
            training_args.generation_kwargs = {"min_tokens": length, "logit_bias": {i: -100.0 for i in vision_ids}}
        else:
            training_args.generation_kwargs = {"min_new_tokens": length, "suppress_tokens": vision_ids}
        per_step = training_args.per_device_train_batch_size // training_args.num_generations
        rows = make_rows(
            max(per_step * (args.warmup + args.steps), 2), parse_image_size(args.image_size), work / "images", args.seed
        )
        dataset = build_dataset(rows, training_args.prompt_template)
        prompt_tokens, image_patches = prompt_shape(
            processor, rows[0], training_args.prompt_template, min_pixels, max_pixels
        )
        estimate = estimate_for(model, model.config, training_args, model_args, prompt_tokens, image_patches)
        timer = step_timer()
        trainer = timed_trainer_class()(
            model=model,
            reward_funcs=reward_funcs,
            args=training_args,
            train_dataset=dataset,
            processing_class=processor,
            peft_config=get_peft_config(model_args),
            callbacks=[timer],
        )
        trainer.remove_callback(PrinterCallback)  # no log line per step
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        params = unique_params(trainer.model)
        trained = [p for p in params if p.requires_grad]
        lengths = [n for step in trainer.generated_lengths for n in step]
        skip = args.warmup
        step_s = timer.times[skip:]
        generation_s = trainer.generation_times[skip:]
        training_s = [step - gen for step, gen in zip(step_s, generation_s, strict=True)]
        tokens = [sum(step) for step in trainer.generated_lengths[skip:]]
        result = {
            "backend": {"hf": "HF generate", "vllm": "vLLM colocate"}[backend],
            "finetuning": "lora" if model_args.use_peft else "full",
            "model": model_name,
            "device": device_description(),
            "params": sum(p.numel() for p in params),
            "trainable_params": sum(p.numel() for p in trained),
            "trainable_dtype": str(trained[0].dtype).removeprefix("torch.") if trained else None,
            "lora": lora_settings(args.lora_recipe) if args.lora else None,
            "settings": {
                "recipe": os.path.relpath(args.recipe, REPO_ROOT),
                "prompts_per_step": per_step,
                "num_generations": training_args.num_generations,
                "completions_per_step": training_args.per_device_train_batch_size,
                "completion_length": length,
                "image_size": args.image_size,
                "min_pixels": min_pixels,
                "max_pixels": max_pixels,
                "prompt_tokens": prompt_tokens,
                "image_tokens_per_prompt": image_patches // 4,
                "loss_type": training_args.loss_type,
                "beta": training_args.beta,
                "dtype": model_args.dtype,
                "bf16": training_args.bf16,
                "gradient_checkpointing": training_args.gradient_checkpointing,
                "attn_implementation": model.config._attn_implementation,
                "vllm_gpu_memory_utilization": training_args.vllm_gpu_memory_utilization if backend == "vllm" else None,
                "memory_cap_gb": args.memory_cap_gb,
                "warmup_steps": args.warmup,
                "steps": args.steps,
            },
            "step_s": [round(t, 4) for t in step_s],
            "generation_s": [round(t, 4) for t in generation_s],
            "training_s": [round(t, 4) for t in training_s],
            "weight_sync_s": [round(t, 4) for t in trainer.sync_times[skip:]],
            "median_step_s": round(median(step_s), 4),
            "median_generation_s": round(median(generation_s), 4),
            "median_training_s": round(median(training_s), 4),
            "median_weight_sync_s": round(median(trainer.sync_times[skip:]), 4) if trainer.sync_times else None,
            "completion_tokens_per_step": tokens,
            "completion_length_min": min(lengths),
            "completion_length_max": max(lengths),
            "generated_tokens_per_s": round(sum(tokens) / sum(generation_s), 1),
            "peak_memory": peak_memory(),
            "memory_estimate": estimate,
            "goal_step_s": GOAL_STEP_S,
            "paper_step_s": PAPER_STEP_S,
            # A step time says something about the goal only for the 2B size on a GPU.
            "meets_goal": (median(step_s) <= GOAL_STEP_S) if cuda and not args.tiny else None,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
            "date": datetime.date.today().isoformat(),
        }
        if backend == "vllm":
            import vllm

            result["versions"]["vllm"] = vllm.__version__
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def estimate_only(args: argparse.Namespace) -> dict[str, Any]:
    """The analytic memory estimate of the recipe's setting, from the architecture alone (meta device, no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from medvlm_trl.grpo import parse_args

    work = Path(tempfile.mkdtemp(prefix="grpo_step-"))
    try:
        _, training_args, model_args = parse_args(
            recipe_overrides(args, "unset", str(work / "out"), "hf", torch.cuda.is_available(), keep_dtype=True)
        )
        min_pixels, max_pixels = training_args.min_pixels, training_args.max_pixels
        if args.tiny or args.model:
            from medvlm_trl.tiny import tiny_vlm_path

            path = str(tiny_vlm_path()) if args.tiny else args.model
            config = AutoConfig.from_pretrained(path)
            processor = AutoProcessor.from_pretrained(path, padding_side="left")
            set_pixel_bounds(processor, min_pixels, max_pixels)
            name = "tiny-qwen2-vl" if args.tiny else args.model
        else:
            config = load_config_2b()
            processor = padded_processor(config.text_config.vocab_size, min_pixels, max_pixels)
            name = "Qwen2-VL-2B architecture"
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(config)
        row = make_rows(1, parse_image_size(args.image_size), work / "images", args.seed)[0]
        prompt_tokens, image_patches = prompt_shape(
            processor, row, training_args.prompt_template, min_pixels, max_pixels
        )
        estimate = estimate_for(model, config, training_args, model_args, prompt_tokens, image_patches)
        return {"model": name, "finetuning": "lora" if model_args.use_peft else "full", "memory_estimate": estimate}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", help="real weights: a model id or folder (default: the 2B architecture, random)")
    which.add_argument("--tiny", action="store_true", help="the project's tiny Qwen2-VL (CPU smoke runs)")
    parser.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help="auto: HF, and vLLM if it can")
    parser.add_argument("--lora", action="store_true", help="LoRA with --lora-recipe's settings instead of full FT")
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="the GRPO recipe whose setting is timed")
    parser.add_argument("--lora-recipe", default=str(DEFAULT_LORA_RECIPE), help="recipe the LoRA settings come from")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=1, help="steps run first and not timed")
    parser.add_argument("--completion-length", type=int, default=1024, help="tokens in every completion")
    parser.add_argument("--image-size", default="896x448", help="WIDTHxHEIGHT of the random images")
    parser.add_argument("--prompts-per-step", type=int, default=None, help="default: the recipe's (2)")
    parser.add_argument("--generations", type=int, default=None, help="G; default: the recipe's (6)")
    parser.add_argument("--min-pixels", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--max-pixels", type=int, default=None, help="default: the recipe's (401408)")
    parser.add_argument("--attn-implementation", default=None, help="e.g. flash_attention_2; default: sdpa")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["bfloat16", "float32"],
        help="weights' dtype; default: the recipe's (float32, under bf16 autocast)",
    )
    parser.add_argument("--vllm-gpu-memory-utilization", type=float, default=None, help="default: the recipe's")
    parser.add_argument("--memory-cap-gb", type=float, default=None, help="cap this process's GPU memory (e.g. 24)")
    parser.add_argument("--estimate-only", action="store_true", help="print the memory estimate and exit")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", help="write the results (a list of runs) to this file")
    parser.add_argument("--markdown", help="write a results table to this file")
    return parser


def child_argv(argv: list[str], backend: str, json_path: str) -> list[str]:
    """`argv` for one backend in its own process: --backend, --json and --markdown replaced."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        name = item.split("=", 1)[0]
        if name in ("--backend", "--json", "--markdown"):
            skip = "=" not in item
            continue
        out.append(item)
    return [*out, "--backend", backend, "--json", json_path]


def check_args(args: argparse.Namespace) -> None:
    if args.steps < 1 or args.warmup < 0:
        raise BenchError(f"need --steps >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    if args.completion_length < 1:
        raise BenchError(f"--completion-length must be at least 1, got {args.completion_length}")
    parse_image_size(args.image_size)
    for path in (args.recipe, args.lora_recipe):
        if not Path(path).is_file():
            raise BenchError(f"recipe not found: {path}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = make_parser().parse_args(argv)
    import warnings

    import torch
    import transformers

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    try:
        check_args(args)
        if args.estimate_only:
            result = estimate_only(args)
            print(format_estimate(result["memory_estimate"], result["finetuning"]))
            print(RESULT_PREFIX + json.dumps(result))
            if args.json:
                Path(args.json).write_text(json.dumps([result], indent=2) + "\n")
            return 0
        backends, skipped = choose_backends(args.backend, torch.cuda.is_available(), vllm_importable())
    except BenchError as err:
        print(f"grpo_step: error: {err}", file=sys.stderr)
        return 2
    if skipped:
        print(skipped)
    results = []
    if len(backends) == 1:
        from medvlm_trl.grpo import RecipeError
        from medvlm_trl.loading import ModelLoadError

        try:
            result = run_one(args, backends[0])
        except (
            BenchError,
            RecipeError,
            ModelLoadError,
            OSError,
        ) as err:  # a bad recipe, model path or id: one line, no traceback
            print(f"grpo_step: error: {err}", file=sys.stderr)
            return 2
        print(format_run(result))
        print(RESULT_PREFIX + json.dumps(result))
        results.append(result)
    else:
        # One process per backend: a fresh CUDA context, and each backend's own peak memory.
        for backend in backends:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
                path = fh.name
            try:
                proc = subprocess.run([sys.executable, __file__, *child_argv(argv, backend, path)], check=False)
                if proc.returncode != 0:
                    print(f"grpo_step: the {backend} run failed (exit status {proc.returncode})", file=sys.stderr)
                    return proc.returncode
                results.extend(json.loads(Path(path).read_text()))
            finally:
                os.unlink(path)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(render_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
