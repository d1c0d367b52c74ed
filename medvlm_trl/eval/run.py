"""`medvlm-trl eval`: greedy answers of a model to a test split, scored per question, summarised per modality.

    medvlm-trl eval --model JZPeterPan/MedVLM-R1 --split sample --prompt r1 --out runs/eval/grpo_qwen2vl_2b

MedVLM-R1 (Pan et al., section 4) tests on 300 MRI (in domain), 300 CT and 300 X-ray (out of domain) questions with
greedy decoding and a strict rule; the RL-MedVQA study (Zhu et al., arXiv:2505.13973, section 4) tests on 7K PMC-VQA
questions and adds reasoning metrics (appendix B). This module runs either protocol:

- Rows: a registered dataset's test split (`medvlm_trl.data.registry.load_rows(name, "test")`; `sample` is the
  embedded sample set), or a split file: with `--dataset NAME` the data layer reads it (e.g. MedVLM-R1's manifest with
  `--dataset huatuo`), without it the file must hold contract rows (a JSON list or JSONL; relative image paths are
  read against `--data_dir`, else the file's folder). A manifest written by `make-split dataset` records how its
  data is read (`medvlm_trl.data.generic`: dataset name, data files, column mapping), so it needs no `--dataset`.
  Bad rows raise an error naming the row, or are skipped and counted with `--skip_bad_rows`.
- Prompts: built by `medvlm_trl.data.prompts` from the row and `--prompt r1|simple|study`; images are loaded and
  resized once by `medvlm_trl.data.images.prepare_image` to `--min_pixels`/`--max_pixels` (default 401408, the
  study's bound) on the grid of the model's own processor (`image_factor`: 28 pixels a token side for Qwen2-VL and
  Qwen2.5-VL, 32 for Qwen3-VL and Qwen3.5; a processor that merges no patches gets the pixel bounds only and sizes
  images itself), and the processor is given the same bounds, so it does not resize them again.
- Generation: greedy. vLLM when it is installed and a GPU is present (`vllm.LLM` with the chat-templated prompt and
  the image as `multi_modal_data`), else batched Hugging Face `generate` with left padding. `--backend` forces one.
- Scoring: reasoning prompts by `--answer_rule`: `strict` (MedVLM-R1's `score_strict`, the default) or `study` (the
  RL-MedVQA study's `score_study`: the correct letter or the correct option's text inside `<answer>`); the simple
  prompt by `score_letter` (see `medvlm_trl.eval.scoring`). `summary.json` records the rule as `scoring`. Every
  completion of a reasoning prompt is also audited (`medvlm_trl.eval.consistency`).
- Output, in `--out`: `predictions.jsonl`, one line per question (id, modality, source, completion, the parsed answer,
  score, audit), appended and flushed after every batch; `run.json`, the settings the predictions were made with;
  `summary.json`, accuracy %, n and random-guess % per modality and overall, the consistency rates, and the reasoning
  metrics asked for with `--metrics`.
- Resume: rerunning the same command skips every id already in `predictions.jsonl` (a line cut off by a kill is
  dropped and redone), so an interrupted run continues where it stopped and no question is scored twice. A rerun
  with other settings (model, split, prompt, pixels, tokens, backend, dtype) into the same folder is refused.
- `--limit N` (the first N rows, for smoke tests) is recorded in the summary (`limit`, `split_rows`) and such a
  summary is never `complete` (`finished` says whether its N rows are done), so neither `medvlm-trl table` nor
  `reproduce-table1` takes it for a full result. It is refused in a folder that holds predictions beyond its first N
  rows (a fuller result it would replace) unless `--overwrite true` discards them.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medvlm_trl.data.images import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    ImageLoadError,
    check_factor_bounds,
    image_factor,
    prepare_image,
)
from medvlm_trl.data.prompts import REASONING_TEMPLATES, TEMPLATES, build_prompt
from medvlm_trl.data.schema import BadRowError, SkipReport, filter_rows
from medvlm_trl.eval.consistency import DEFAULT_MIN_THINK_WORDS, audit_completion, consistency_rates
from medvlm_trl.eval.metrics import (
    DEFAULT_JUDGE_MODEL,
    DEFAULT_PERPLEXITY_MODEL,
    DEFAULT_SIMILARITY_MODEL,
    METRIC_NAMES,
)
from medvlm_trl.eval.scoring import parsed_answer, random_guess_accuracy, score_completion
from medvlm_trl.loading import ModelLoadError, load_pretrained
from medvlm_trl.rewards.judge import resolve_dtype

__all__ = [
    "EvalArguments",
    "EvalInputError",
    "HFGenerator",
    "VLLMGenerator",
    "evaluate",
    "load_eval_rows",
    "main",
    "read_predictions",
    "run_eval",
    "summarize",
]

PREDICTIONS = "predictions.jsonl"
SUMMARY = "summary.json"
RUN_CONFIG = "run.json"
# Settings that change what a completion is; a resumed run must match them all.
RESUME_KEYS = (
    "model",
    "split",
    "dataset",
    "prompt",
    "max_new_tokens",
    "min_pixels",
    "max_pixels",
    "backend",
    "dtype",
    "scoring",
    "chat_template_kwargs",
)

# A generator maps conversational prompts and their images (one list per prompt) to completion texts.
Generator = Callable[[list[list[dict]], list[list[Any]]], list[str]]


class EvalInputError(ValueError):
    """Input the evaluator cannot use (a missing split, a damaged predictions file, a mismatched resume)."""


@dataclass
class EvalArguments:
    """Arguments of `medvlm-trl eval` (also readable from a YAML file with `--config`)."""

    model: str = field(
        metadata={"help": "Model to evaluate: a Hugging Face id or a local folder (with its processor)."}
    )
    split: str = field(
        default="sample",
        metadata={
            "help": "Test rows: a registered dataset name (`sample`, `huatuo`, `pmc_vqa`, `omnimedvqa`; or data for "
            "`datasets`, e.g. `csv` with --data_files, whose `test` split is read) or a split file."
        },
    )
    prompt: Literal["r1", "simple", "study"] = field(
        default="r1",
        metadata={
            "help": "Prompt template: `r1` (MedVLM-R1), `study` (RL-MedVQA), both scored inside <answer> by "
            "`--answer_rule`; `simple` (bare letter, the baselines' prompt), scored by the letter rule."
        },
    )
    answer_rule: Literal["strict", "study"] = field(
        default="strict",
        metadata={
            "help": "How a reasoning prompt's `<answer>` is scored: `strict` (MedVLM-R1: exactly the correct letter) "
            "or `study` (the RL-MedVQA study: the correct letter or the correct option's text, normalised). The "
            "simple prompt is always scored by the letter rule."
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Registered dataset that reads `--split` when it is a split file (e.g. `huatuo` for "
            "MedVLM-R1's manifest). Not needed for a manifest of `make-split dataset`, which records how its data "
            "is read. Otherwise, without it a split file must hold contract rows."
        },
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "Folder of the dataset's files / the root of relative image paths."}
    )
    data_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "Your own data's files, as the training recipe's `data_files` (with `--dataset csv|json|...`). "
            "A split file from `make-split dataset` records them, so `--split MANIFEST` alone reads its rows."
        },
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "The `datasets` configuration name of a hub dataset (recipe key alike)."}
    )
    dataset_columns: str | None = field(
        default=None,
        metadata={"help": "Column mapping of your own data as a JSON object (the recipe's `dataset_columns`)."},
    )
    image_root: str | None = field(
        default=None, metadata={"help": "Folder that relative image paths of the dataset are read from."}
    )
    out: str = field(default="runs/eval", metadata={"help": "Output folder (predictions.jsonl, summary.json)."})
    max_new_tokens: int = field(
        default=512, metadata={"help": "Longest completion in tokens (the MedVLM-R1 test script uses 512)."}
    )
    batch_size: int = field(default=8, metadata={"help": "Questions per generation batch (and per flush)."})
    backend: Literal["auto", "hf", "vllm"] = field(
        default="auto", metadata={"help": "`vllm` when installed and on a GPU (auto), else `hf` generate."}
    )
    dtype: str = field(
        default="auto", metadata={"help": "Model dtype: `auto` (bfloat16 on GPU, float32 on CPU), `bfloat16`, ..."}
    )
    device: str | None = field(default=None, metadata={"help": "Device for HF generation (default: cuda if present)."})
    min_pixels: int = field(default=DEFAULT_MIN_PIXELS, metadata={"help": "Lower pixel bound of each image."})
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS, metadata={"help": "Upper pixel bound of each image (the study's 401408)."}
    )
    chat_template_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Extra arguments of the model's chat template, a mapping or JSON text: Qwen3.5's template opens "
            'a think block in the generation prompt unless given `{"enable_thinking": false}`.'
        },
    )
    limit: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate only the first N rows (smoke tests). Recorded in summary.json, which then never counts "
            "as complete; refused where predictions of more rows exist (a fuller result), unless --overwrite."
        },
    )
    skip_bad_rows: bool = field(
        default=False, metadata={"help": "Skip and count bad rows or unreadable images instead of stopping."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Discard earlier predictions in `--out` first."})
    seed: int = field(default=42, metadata={"help": "Seed passed to the data layer (sub-sampling) and vLLM."})
    min_think_words: int = field(
        default=DEFAULT_MIN_THINK_WORDS,
        metadata={"help": "Consistency audit: a think block with fewer words counts as superficial."},
    )
    metrics: str = field(
        default="token_length",
        metadata={
            "help": "Reasoning metrics to compute (comma list of "
            + ", ".join(METRIC_NAMES)
            + ", or `none`); only for reasoning prompts."
        },
    )
    similarity_model: str = field(
        default=DEFAULT_SIMILARITY_MODEL, metadata={"help": "Cross-encoder of the similarity metric."}
    )
    perplexity_model: str = field(
        default=DEFAULT_PERPLEXITY_MODEL, metadata={"help": "Causal LM of the perplexity metric."}
    )
    judge_model: str = field(default=DEFAULT_JUDGE_MODEL, metadata={"help": "Instruct LLM giving the thinking reward."})
    judge_mode: Literal["generate", "scores"] = field(
        default="generate", metadata={"help": "Read the judge's grade from a generated reply or from its scores."}
    )
    metrics_batch_size: int = field(default=8, metadata={"help": "Batch size of the metric models."})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vLLM's share of GPU memory."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Passed to from_pretrained / vLLM."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self):
        for name in ("max_new_tokens", "batch_size", "min_pixels", "max_pixels", "min_think_words"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) is above max_pixels ({self.max_pixels})")
        if isinstance(self.chat_template_kwargs, str):
            try:
                self.chat_template_kwargs = json.loads(self.chat_template_kwargs)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"chat_template_kwargs must be a JSON mapping, got {self.chat_template_kwargs!r}"
                ) from err
        if self.chat_template_kwargs is not None and not isinstance(self.chat_template_kwargs, dict):
            raise ValueError(f"chat_template_kwargs must be a mapping, got {self.chat_template_kwargs!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be positive, got {self.limit!r}")
        if self.prompt not in TEMPLATES:
            raise ValueError(f"unknown prompt {self.prompt!r}; choose one of {sorted(TEMPLATES)}")
        if self.answer_rule not in ("strict", "study"):
            raise ValueError(f"answer_rule must be `strict` or `study`, got {self.answer_rule!r}")
        self.metric_list()  # validate early
        if isinstance(self.data_files, str):
            self.data_files = [self.data_files]
        if self.dataset_columns is not None:
            from medvlm_trl.data.generic import parse_columns

            self.dataset_columns = parse_columns(self.dataset_columns) or None

    def metric_list(self) -> list[str]:
        names = [m.strip() for m in self.metrics.split(",") if m.strip() and m.strip() != "none"]
        unknown = sorted(set(names) - set(METRIC_NAMES))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {list(METRIC_NAMES)} or `none`")
        return names


# ----------------------------------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------------------------------
def _registry():
    try:
        from medvlm_trl.data import registry
    except ImportError:
        return None
    return registry


def _read_rows_file(path: Path) -> list[dict]:
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise EvalInputError(f"{path}: neither a JSON list nor JSONL ({err})") from err
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise EvalInputError(f"{path}: expected a list of row objects")
    return data


def _absolute_images(row: dict, root: Path) -> dict:
    def fix(value):
        if isinstance(value, str) and not Path(value).is_absolute():
            return str(root / value)
        return value

    row = dict(row)
    if "image" in row:
        row["image"] = fix(row["image"])
    if isinstance(row.get("images"), list):
        row["images"] = [fix(v) for v in row["images"]]
    return row


def _check_data_options(registry, name: str, data: dict) -> None:
    refused = sorted(set(data) - registry.loader_kwargs(name))
    if refused:
        flags = ", ".join(f"--{k}" for k in refused)
        raise EvalInputError(f"{flags}: not an option of dataset {name!r} (they describe data read through `datasets`)")


def _recorded_data(path: Path, data_dir: str | None, data: dict) -> tuple[str | None, str | None, dict]:
    """`(dataset, data_dir, data options)` a `make-split dataset` manifest records, under those given here."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, data_dir, data
    recorded = manifest.get("settings", {}).get("data") if isinstance(manifest, dict) else None
    if not isinstance(recorded, dict) or "dataset_name" not in recorded:
        return None, data_dir, data
    recorded = dict(recorded)
    dataset = recorded.pop("dataset_name")
    data_dir = data_dir if data_dir is not None else recorded.pop("data_dir", None)
    recorded.pop("data_dir", None)
    return dataset, data_dir, {**recorded, **data}


def load_eval_rows(
    split: str,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    skip_bad_rows: bool = False,
    seed: int = 42,
    report: SkipReport | None = None,
    data: dict | None = None,
) -> list[dict]:
    """The test rows named by `split` (see the module docstring), checked against the contract. `data`: the data
    options of data read through `datasets` (`data_files`, `dataset_config`, `dataset_columns`, `image_root`)."""
    path = Path(split)
    registry = _registry()
    data = {k: v for k, v in (data or {}).items() if v is not None}
    if path.is_file():
        if dataset is None and registry is not None:
            # A split file of data read through `datasets` records how to read it (`make-split dataset`).
            dataset, data_dir, data = _recorded_data(path, data_dir, data)
        if dataset is not None:
            if registry is None:
                raise EvalInputError("--dataset needs medvlm_trl.data.registry, which is not installed")
            _check_data_options(registry, dataset, data)
            return list(
                registry.load_rows(
                    dataset,
                    "test",
                    data_dir=data_dir,
                    split_file=str(path),
                    skip_bad_rows=skip_bad_rows,
                    seed=seed,
                    report=report,
                    **data,
                )
            )
        rows = _read_rows_file(path)
        if rows and {"problem", "solution"} <= rows[0].keys():  # the upstream schema, whose `answer` is option text
            raise EvalInputError(
                f"{path} holds HuatuoGPT-Vision / MedVLM-R1 manifest rows (`problem`, `solution`), not contract rows; "
                "pass --dataset huatuo so the data layer converts them"
            )
        root = Path(data_dir) if data_dir else path.parent
        rows = [_absolute_images(r, root) for r in rows]
        return list(filter_rows(rows, skip_bad_rows=skip_bad_rows, report=report))
    if path.suffix in {".json", ".jsonl"} or os.sep in split:
        raise EvalInputError(f"split file not found: {split}")
    if registry is not None:
        _check_data_options(registry, split, data)
        return list(
            registry.load_rows(
                split, "test", data_dir=data_dir, skip_bad_rows=skip_bad_rows, seed=seed, report=report, **data
            )
        )
    if split == "sample":
        from medvlm_trl.data.sample import load_sample

        return load_sample("test")
    raise EvalInputError(f"unknown split {split!r}: not a file, and no dataset registry is installed")


# ----------------------------------------------------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------------------------------------------------
def _torch_dtype(torch, dtype: str, device) -> Any:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return resolve_dtype(torch, dtype)


def _size_kwargs(processor, min_pixels: int, max_pixels: int) -> dict:
    """The processor-call kwargs that set the pixel bounds, for Qwen2-VL-style image processors (those that merge
    patches, whose `size` holds pixel counts as `shortest_edge` / `longest_edge`); other processors keep their own
    sizing, since their `shortest_edge` is a side length, not a pixel count."""
    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)

    def get(key: str):
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    if hasattr(image_processor, "merge_size") and get("shortest_edge") and get("longest_edge"):
        return {"size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}}
    return {}


def _checked_factor(processor, model: str, min_pixels: int, max_pixels: int) -> int | None:
    """The processor's `image_factor`, after checking that the bounds hold one image token of it."""
    factor = image_factor(processor)
    if factor is not None:
        try:
            check_factor_bounds(min_pixels, max_pixels, factor, f"model {model!r}")
        except ValueError as err:
            raise EvalInputError(str(err)) from None
    return factor


def model_image_factor(model: str, min_pixels: int, max_pixels: int, trust_remote_code: bool = False) -> int | None:
    """The `image_factor` of `model`'s processor (loaded from its folder or the hub cache), bounds checked; read
    before the model itself is loaded, so that every image is prepared on the grid the model will see."""
    from transformers import AutoProcessor

    processor = load_pretrained(
        AutoProcessor.from_pretrained, model, "processor (--model)", trust_remote_code=trust_remote_code
    )
    return _checked_factor(processor, model, min_pixels, max_pixels)


class HFGenerator:
    """Greedy batched generation with transformers: `AutoModelForImageTextToText` + `AutoProcessor`, left padding."""

    name = "hf"

    def __init__(
        self,
        model: str,
        *,
        max_new_tokens: int = 512,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        dtype: str = "auto",
        device: str | None = None,
        trust_remote_code: bool = False,
        chat_template_kwargs: dict | None = None,
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.processor = load_pretrained(
            AutoProcessor.from_pretrained, model, "processor (--model)", trust_remote_code=trust_remote_code
        )
        # Batched generation continues every prompt from the last column, so the padding goes on the left.
        self.processor.tokenizer.padding_side = "left"
        self.model = load_pretrained(
            AutoModelForImageTextToText.from_pretrained,
            model,
            "model (--model)",
            dtype=_torch_dtype(torch, dtype, self.device),
            trust_remote_code=trust_remote_code,
        ).to(self.device)
        self.model.eval()
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.max_new_tokens = max_new_tokens
        self.image_factor = _checked_factor(self.processor, model, min_pixels, max_pixels)
        self.size_kwargs = _size_kwargs(self.processor, min_pixels, max_pixels)
        tok = self.processor.tokenizer
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def __call__(self, prompts: list[list[dict]], images: list[list[Any]]) -> list[str]:
        import torch

        texts = [
            self.processor.apply_chat_template(
                p, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
            )
            for p in prompts
        ]
        flat = [image for row_images in images for image in row_images]
        inputs = self.processor(
            text=texts, images=flat or None, padding=True, return_tensors="pt", **self.size_kwargs
        ).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=self.pad_token_id,
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)


class VLLMGenerator:
    """Greedy generation with vLLM: the chat-templated text prompt plus the prepared image(s) as `multi_modal_data`,
    with vLLM's processor given the same pixel bounds (so the images it sees are the ones we prepared)."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        max_new_tokens: int = 512,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        dtype: str = "auto",
        seed: int = 42,
        gpu_memory_utilization: float = 0.9,
        max_images_per_prompt: int = 1,
        trust_remote_code: bool = False,
        chat_template_kwargs: dict | None = None,
    ):
        from transformers import AutoProcessor
        from vllm import LLM, SamplingParams

        self.processor = load_pretrained(
            AutoProcessor.from_pretrained, model, "processor (--model)", trust_remote_code=trust_remote_code
        )
        self.image_factor = _checked_factor(self.processor, model, min_pixels, max_pixels)
        self.llm = LLM(
            model=model,
            dtype=dtype,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            limit_mm_per_prompt={"image": max_images_per_prompt},
            mm_processor_kwargs={"min_pixels": min_pixels, "max_pixels": max_pixels},
            trust_remote_code=trust_remote_code,
        )
        self.params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})

    def __call__(self, prompts: list[list[dict]], images: list[list[Any]]) -> list[str]:
        requests = []
        for prompt, row_images in zip(prompts, images):
            text = self.processor.apply_chat_template(
                prompt, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
            )
            request: dict[str, Any] = {"prompt": text}
            if row_images:
                request["multi_modal_data"] = {"image": row_images if len(row_images) > 1 else row_images[0]}
            requests.append(request)
        outputs = self.llm.generate(requests, sampling_params=self.params, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]


def vllm_available() -> bool:
    """vLLM is importable and a CUDA GPU is visible (the guarded check behind `--backend auto`)."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    import torch

    return torch.cuda.is_available()


class _LazyGenerator:
    """Loads the model on the first batch, so that a finished or mismatched resume never pays for loading it; its
    `image_factor` loads only the model's processor."""

    def __init__(self, factory: Callable[[], Generator], factor: Callable[[], int | None] | None = None):
        self.factory, self.generator, self.factor, self._image_factor = factory, None, factor, None

    @property
    def image_factor(self) -> int | None:
        if self.generator is not None:
            return getattr(self.generator, "image_factor", None)
        if self._image_factor is None and self.factor is not None:
            self._image_factor = self.factor()
        return self._image_factor

    def __call__(self, prompts: list[list[dict]], images: list[list[Any]]) -> list[str]:
        if self.generator is None:
            self.generator = self.factory()
        return self.generator(prompts, images)


def make_generator(args: EvalArguments, backend: str, max_images_per_prompt: int = 1) -> Generator:
    common = dict(
        max_new_tokens=args.max_new_tokens,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        chat_template_kwargs=args.chat_template_kwargs,
    )
    if backend == "vllm":
        return VLLMGenerator(
            args.model,
            dtype=args.dtype,
            seed=args.seed,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_images_per_prompt=max_images_per_prompt,
            trust_remote_code=args.trust_remote_code,
            **common,
        )
    return HFGenerator(
        args.model, dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code, **common
    )


# ----------------------------------------------------------------------------------------------------------------------
# Predictions file (resumable)
# ----------------------------------------------------------------------------------------------------------------------
def read_predictions(path: str | os.PathLike) -> dict[str, dict]:
    """The records of a predictions file by id. A last line cut off by a kill (no newline, not JSON) is removed from
    the file so that it is redone; a damaged line elsewhere is an error; a repeated id keeps its first record."""
    path = Path(path)
    if not path.exists():
        return {}
    data = path.read_bytes()
    records: dict[str, dict] = {}
    pos = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        is_tail = number == len(lines)  # the text after the last newline: empty unless a write was cut short
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                if not is_tail:
                    raise EvalInputError(f"{path}: line {number} is not JSON ({err}); the file is damaged") from err
                with open(path, "r+b") as fh:
                    fh.truncate(pos)
                break
            if not isinstance(record, dict) or "id" not in record:
                raise EvalInputError(f"{path}: line {number} is not a prediction record")
            records.setdefault(str(record["id"]), record)
            if is_tail:  # a complete record whose newline was lost: restore it before appending after it
                with open(path, "ab") as fh:
                    fh.write(b"\n")
        pos += len(line) + 1
    return records


def _append(path: Path, records: Sequence[dict]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _check_resume(out: Path, config: dict) -> None:
    path = out / RUN_CONFIG
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise EvalInputError(f"{path} is damaged ({err}); use another --out or --overwrite") from None
        if not isinstance(previous, dict):
            raise EvalInputError(f"{path} is not a run record; use another --out or --overwrite")
        diff = {k: (previous.get(k), config.get(k)) for k in RESUME_KEYS if previous.get(k) != config.get(k)}
        if diff:
            details = "; ".join(f"{k}: {a!r} before, {b!r} now" for k, (a, b) in diff.items())
            raise EvalInputError(
                f"{out} holds predictions made with other settings ({details}); use another --out or --overwrite"
            )
    else:
        _write_json(path, config)


# ----------------------------------------------------------------------------------------------------------------------
# The evaluation loop
# ----------------------------------------------------------------------------------------------------------------------
def _row_images(row: dict, min_pixels: int, max_pixels: int, factor: int) -> list:
    values = row["images"] if row.get("images") else [row.get("image")]
    return [prepare_image(v, min_pixels, max_pixels, row_id=row["id"], factor=factor) for v in values]


def _record(row: dict, completion: str, rule: str, min_think_words: int) -> dict:
    record = {
        "id": row["id"],
        "modality": row.get("modality"),
        "source": row.get("source"),
        "question": row["question"],
        "options": list(row["options"]),
        "answer": row["answer"],
        "completion": completion,
        "parsed": parsed_answer(completion, rule),
        "score": score_completion(completion, row["answer"], rule, row["options"]),
    }
    if rule != "letter":
        record["audit"] = audit_completion(completion, row["options"], min_think_words)
    return record


def evaluate(
    rows: Sequence[dict],
    generate: Generator,
    out_dir: str | os.PathLike,
    *,
    prompt: str = "r1",
    batch_size: int = 8,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_think_words: int = DEFAULT_MIN_THINK_WORDS,
    skip_bad_rows: bool = False,
    config: dict | None = None,
    progress: bool = True,
    answer_rule: str = "strict",
    limit: int | None = None,
    split_rows: int | None = None,
    image_factor: int | None = None,
) -> dict:
    """Generate, score and append every row not yet in `out_dir/predictions.jsonl`; write and return the summary.

    `generate(prompts, images) -> completions` is any generator (the HF or vLLM one, or a test double). `config` is
    recorded in `run.json` on the first run and must match on a resumed one (see `RESUME_KEYS`). A reasoning prompt is
    scored by `answer_rule` (`strict` or `study`), the simple prompt by the letter rule. `rows` may be
    the first `limit` of a test split of `split_rows` rows: the summary then records both and is not `complete`, and a
    folder holding predictions of rows beyond them (a fuller result) is refused. `image_factor` is
    the model processor's (`model_image_factor`), by default the generator's own `image_factor` attribute; None (a
    processor that merges no patches, or a test double without one) bounds the pixel count only.
    """
    from tqdm.auto import tqdm

    strict = prompt in REASONING_TEMPLATES
    factor = image_factor  # read from the generator when the first image is prepared (after the resume check)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"prompt": prompt, "min_pixels": min_pixels, "max_pixels": max_pixels, **(config or {})}
    rule = answer_rule if strict else "letter"
    config["scoring"] = rule
    _check_resume(out, config)
    predictions = out / PREDICTIONS
    done = read_predictions(predictions)  # keyed by str(id): JSON may hold ids of other types
    ids = {str(row["id"]) for row in rows}
    split_rows = len(rows) if split_rows is None else split_rows
    limited = limit is not None and len(rows) < split_rows
    beyond = done.keys() - ids
    if limited and beyond:
        raise EvalInputError(
            f"{out} holds predictions of {len(beyond)} row(s) beyond the first {limit} that --limit {limit} covers; "
            f"its summary would replace that fuller result: evaluate into another --out, or pass --overwrite true to "
            f"discard the earlier predictions"
        )
    todo = [row for row in rows if str(row["id"]) not in done]
    skipped = SkipReport()
    bar = tqdm(total=len(rows), initial=len(ids & done.keys()), desc="eval", unit="q", disable=not progress)
    try:
        for start in range(0, len(todo), batch_size):
            batch, prompts, images = [], [], []
            if factor is None:
                # 1: only the pixel bounds, for a processor that sizes images by its own rule (or a test double)
                factor = getattr(generate, "image_factor", None) or 1
            for row in todo[start : start + batch_size]:
                try:
                    row_images = _row_images(row, min_pixels, max_pixels, factor)
                except ImageLoadError as err:
                    if not skip_bad_rows:
                        raise
                    skipped.add(BadRowError(row["id"], "unreadable_image", str(err)))
                    bar.update(1)
                    continue
                batch.append(row)
                images.append(row_images)
                prompts.append(build_prompt(row["question"], row["options"], prompt, len(row_images)))
            if not batch:
                continue
            completions = generate(prompts, images)
            if len(completions) != len(batch):
                raise RuntimeError(f"the generator returned {len(completions)} completions for {len(batch)} prompts")
            records = [_record(r, c, rule, min_think_words) for r, c in zip(batch, completions)]
            _append(predictions, records)
            done.update((str(r["id"]), r) for r in records)
            bar.update(len(records))
    finally:
        bar.close()
    records = [done[str(row["id"])] for row in rows if str(row["id"]) in done]
    summary = summarize(records, strict=strict, scoring=rule)
    # Every row asked for has its prediction or was skipped as bad (a rerun would skip it again): nothing to resume.
    finished = len(records) + skipped.total == len(rows)
    summary.update(
        {
            "config": config,
            "rows": len(rows),
            "limit": limit,
            "split_rows": split_rows,
            "finished": finished,
            # ... and those rows are the whole test split: a limited eval is never a complete one.
            "complete": finished and not limited,
            "skipped": {"total": skipped.total, "counts": dict(skipped.counts), "examples": skipped.examples},
            "stale_predictions": len(done.keys() - ids),
        }
    )
    _write_json(out / SUMMARY, summary)
    return summary


def _group_summary(records: Sequence[dict], strict: bool) -> dict:
    n = len(records)
    correct = sum(r["score"] for r in records)
    group = {
        "n": n,
        "correct": correct,
        "accuracy": 100.0 * correct / n if n else None,
        "random_guess": random_guess_accuracy(records, by=None)["all"] if n else None,
    }
    if strict:
        group["consistency"] = consistency_rates(r["audit"] for r in records if "audit" in r)
    return group


def summarize(records: Sequence[dict], strict: bool = True, scoring: str | None = None) -> dict:
    """Accuracy %, n, random-guess % (and the consistency rates for reasoning prompts) per modality and overall; the
    `average` is the mean of the per-modality accuracies, as MedVLM-R1's Table 1 averages its three columns."""
    by_modality: dict[str, list[dict]] = {}
    for record in records:
        by_modality.setdefault(str(record.get("modality")), []).append(record)
    modalities = {name: _group_summary(group, strict) for name, group in sorted(by_modality.items())}
    accuracies = [m["accuracy"] for m in modalities.values() if m["accuracy"] is not None]
    return {
        "scoring": scoring or ("strict" if strict else "letter"),
        "modalities": modalities,
        "overall": _group_summary(records, strict),
        "average": sum(accuracies) / len(accuracies) if accuracies else None,
    }


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------
def _compute_metrics(args: EvalArguments, records: list[dict]) -> dict:
    from medvlm_trl.eval.metrics import (
        ReasoningPerplexity,
        ReasoningSimilarity,
        ThinkingRewardJudge,
        reasoning_metrics,
    )

    names = args.metric_list()
    kwargs = {"device": args.device, "batch_size": args.metrics_batch_size}
    return reasoning_metrics(
        records,
        names,
        similarity=ReasoningSimilarity(args.similarity_model, **kwargs) if "similarity" in names else None,
        perplexity=ReasoningPerplexity(args.perplexity_model, **kwargs) if "perplexity" in names else None,
        judge=ThinkingRewardJudge(args.judge_model, mode=args.judge_mode, **kwargs)
        if "thinking_reward" in names
        else None,
        # The study counts reasoning length in tokens of the evaluated model's own tokenizer.
        length_tokenizer=args.model if "token_length" in names else None,
    )


def run_eval(args: EvalArguments, generator: Generator | None = None) -> dict:
    """Everything `medvlm-trl eval` does, callable from Python; `generator` replaces the model's own (tests)."""
    out = Path(args.out)
    if args.overwrite:
        for name in (PREDICTIONS, SUMMARY, RUN_CONFIG):
            (out / name).unlink(missing_ok=True)
    report = SkipReport()
    try:
        rows = load_eval_rows(
            args.split,
            dataset=args.dataset,
            data_dir=args.data_dir,
            skip_bad_rows=args.skip_bad_rows,
            seed=args.seed,
            report=report,
            data={k: getattr(args, k) for k in ("data_files", "dataset_config", "dataset_columns", "image_root")},
        )
    except (EvalInputError, BadRowError, ImageLoadError, FileNotFoundError):
        raise
    except (ValueError, OSError) as err:  # the data layer: an unknown dataset, a split file of another split, ...
        raise EvalInputError(f"split {args.split!r}: {err}") from err
    split_rows = len(rows)
    if args.limit is not None:
        rows = rows[: args.limit]
    if not rows:
        raise EvalInputError(f"split {args.split!r} has no test rows")
    if args.backend == "auto":
        backend = "vllm" if vllm_available() else "hf"
    else:
        backend = args.backend
    if backend == "vllm" and generator is None and importlib.util.find_spec("vllm") is None:
        raise EvalInputError(
            "--backend vllm, but vLLM is not installed: pip install 'medvlm-trl[vllm]', or --backend hf"
        )
    config = {
        "model": args.model,
        "split": args.split,
        "dataset": args.dataset,
        "max_new_tokens": args.max_new_tokens,
        "backend": backend,
        "dtype": args.dtype,
        "chat_template_kwargs": args.chat_template_kwargs,
    }
    if generator is None:
        most_images = max(len(r["images"]) if r.get("images") else 1 for r in rows)
        generator = _LazyGenerator(
            lambda: make_generator(args, backend, most_images),
            lambda: model_image_factor(args.model, args.min_pixels, args.max_pixels, args.trust_remote_code),
        )
    summary = evaluate(
        rows,
        generator,
        out,
        prompt=args.prompt,
        batch_size=args.batch_size,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        min_think_words=args.min_think_words,
        skip_bad_rows=args.skip_bad_rows,
        config=config,
        progress=args.progress,
        answer_rule=args.answer_rule,
        limit=args.limit,
        split_rows=split_rows,
    )
    if report.total:
        summary["skipped"]["load"] = {"total": report.total, "counts": dict(report.counts)}
    names = args.metric_list()
    if names and args.prompt in REASONING_TEMPLATES:
        del generator  # the metric models need the memory the policy held
        gc.collect()
        done = read_predictions(out / PREDICTIONS)
        summary["metrics"] = _compute_metrics(args, [done[str(r["id"])] for r in rows if str(r["id"]) in done])
    _write_json(out / SUMMARY, summary)
    return summary


def format_summary(summary: dict) -> str:
    """A few human lines: accuracy per modality beside the random guess."""
    lines = [f"{'modality':<18} {'n':>6} {'accuracy':>9} {'random':>8}"]
    for name, group in [*summary["modalities"].items(), ("overall", summary["overall"])]:
        acc = "-" if group["accuracy"] is None else f"{group['accuracy']:.2f}"
        rnd = "-" if group["random_guess"] is None else f"{group['random_guess']:.2f}"
        lines.append(f"{name:<18} {group['n']:>6} {acc:>9} {rnd:>8}")
    if summary.get("average") is not None:
        lines.append(f"{'average':<18} {'':>6} {summary['average']:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl eval --model PATH_OR_ID --split FILE_OR_NAME --prompt r1|simple|study [--out DIR] ...`."""
    from trl import TrlParser

    from medvlm_trl.grpo import check_recipe, one_line_errors

    parser = TrlParser(EvalArguments, prog="medvlm-trl eval", description=__doc__.split("\n\n")[0])
    one_line_errors(parser)  # a bad flag value: one line naming the flag, not the usage text
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        check_recipe(argv, parser)  # a --config YAML: unknown keys and wrong value types, named by file and key
        (args,) = parser.parse_args_and_config(argv)
    except ValueError as err:  # EvalArguments.__post_init__ names the bad argument; RecipeError is a ValueError
        print(f"medvlm-trl eval: {err}", file=sys.stderr)
        return 2
    try:
        summary = run_eval(args)
    except (EvalInputError, BadRowError, ImageLoadError, FileNotFoundError, ModelLoadError) as err:
        print(f"medvlm-trl eval: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    if summary["limit"] is not None and not summary["complete"]:
        print(f"limited eval: the first {summary['rows']} of {summary['split_rows']} rows (--limit), not a full result")
    print(f"wrote {Path(args.out) / SUMMARY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
