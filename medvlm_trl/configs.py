"""Every dataclass a recipe or command line fills, and their checks: the `help` text of each field below is the
documentation of the recipe key (or `medvlm-trl eval` flag) of the same name.

| command                | dataclasses (with `trl.ModelConfig` for the training commands)                  |
|------------------------|---------------------------------------------------------------------------------|
| `medvlm-trl grpo`      | `MedVLMScriptArguments` (the data), `MedVLMGRPOConfig` (TRL's `GRPOConfig` + the papers') |
| `medvlm-trl sft`       | `BaselineScriptArguments`, `MedVLMSFTConfig` (TRL's `SFTConfig`)                |
| `medvlm-trl dpo`       | `DPOScriptArguments`, `MedVLMDPOConfig` (TRL's `DPOConfig`)                     |
| `medvlm-trl eval`      | `EvalArguments`                                                                 |

Each training config mixes in `RunSafetyArguments`, the run-safety switches `medvlm_trl.runs` applies. The rules a
field obeys are written once and shared: the prompt name (`medvlm_trl.data.prompts.check_template`) and the pixel
bounds (`medvlm_trl.data.images.check_pixel_bounds`; the model's own floor is checked once its processor is loaded).

Both papers train with GRPO on TRL (MedVLM-R1, Pan et al., section 3; the RL-MedVQA study, Zhu et al.,
arXiv:2505.13973, section 3), and the study also runs Dr.GRPO (Liu et al., "Understanding R1-Zero-Like Training",
section 3.1). `loss_preset` names the two objectives and maps them onto TRL's own fields, so nothing of TRL's loss is
re-implemented here:

| `loss_preset` | TRL `loss_type` | TRL `scale_rewards` | advantage of response i in group g      | loss normaliser            |
|---------------|-----------------|---------------------|-----------------------------------------|----------------------------|
| `grpo`        | `grpo`          | `group`             | (r_i - mean(r_g)) / std(r_g)            | its own length \\|o_i\\|   |
| `dr_grpo`     | `dr_grpo`       | `none`              | r_i - mean(r_g)                         | a constant, B x max length |

TRL's defaults stay TRL's (`loss_type="dapo"`, `beta=0.0`, ...): each paper's values live in its recipes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from trl import DPOConfig, GRPOConfig, SFTConfig

from medvlm_trl.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, check_pixel_bounds
from medvlm_trl.data.prompts import TEMPLATES, check_template
from medvlm_trl.eval.consistency import DEFAULT_MIN_THINK_WORDS
from medvlm_trl.eval.metrics import (
    DEFAULT_JUDGE_MODEL,
    DEFAULT_PERPLEXITY_MODEL,
    DEFAULT_SIMILARITY_MODEL,
    METRIC_NAMES,
)

# What each preset sets on TRL's own fields (see the module docstring for the formulas).
LOSS_PRESETS: dict[str, dict[str, str]] = {
    "grpo": {"loss_type": "grpo", "scale_rewards": "group"},
    "dr_grpo": {"loss_type": "dr_grpo", "scale_rewards": "none"},
}
# TRL 1.16's own defaults, used when no preset is chosen and the field is left unset.
TRL_LOSS_DEFAULTS: dict[str, str] = {"loss_type": "dapo", "scale_rewards": "group"}
# Both presets sum the weighted rewards of a completion first and normalise that sum per group, as both papers do.
PRESET_AGGREGATION = "sum_then_normalize"


def _normalise_scale_rewards(value: Any) -> Any:
    """TRL accepts booleans for `scale_rewards` (True -> "group", False -> "none"); YAML and the CLI give strings."""
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        value = value.lower() == "true"
    return {True: "group", False: "none"}.get(value, value) if isinstance(value, bool) else value


@dataclass
class RunSafetyArguments:
    """The one run-safety switch a recipe or command line sets (transformers 5 dropped its `overwrite_output_dir`).

    Mix it into a training config: `class MedVLMGRPOConfig(RunSafetyArguments, GRPOConfig)`.
    """

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Empty a non-empty `output_dir` that holds an earlier run and train from scratch. Without it (and "
            "without `resume_from_checkpoint`) such a folder is refused, so that no run is overwritten by accident. "
            "A non-empty folder that holds no run (no checkpoint-*, trainer_state.json or medvlm_run.json) is never "
            "emptied. A `--resume_from_checkpoint` given on the command line wins over this key set in a recipe."
        },
    )
    allow_changed_settings: list[str] | None = field(
        default=None,
        metadata={
            "help": "On a resume, the settings allowed to differ from the checkpoint's record, each by name (e.g. "
            "`--allow_changed_settings max_steps learning_rate`). Without it a resume whose settings differ in "
            "anything that changes what is trained is refused. Each allowed change is recorded in medvlm_run.json "
            "(`setting_changes`) and in the model card."
        },
    )


@dataclass
class MedVLMScriptArguments:
    """Where the training rows come from (MedVLM-R1 section 4.1: 600 MRI questions; the RL-MedVQA study section 4:
    a 10K subset of PMC-VQA). Rows are the contract's example rows, loaded by `medvlm_trl.data.registry.load_rows`."""

    dataset_name: str = field(
        default="sample",
        metadata={
            "help": "Dataset to train on, by its `medvlm_trl.data.registry` name: `sample` (the embedded "
            "real-image sample set), `huatuo` (the HuatuoGPT-Vision evaluation data MedVLM-R1 draws its 600 MRI "
            "training questions from; needs `split_file`), `pmc_vqa` or `omnimedvqa`; or your own data as "
            "`datasets.load_dataset` names it: `csv`, `json`, `parquet`, `arrow`, `imagefolder` (with `data_files` "
            "or `data_dir`), a hub id or a local path, mapped with `dataset_columns` (`medvlm_trl.data.generic`)."
        },
    )
    data_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "Your own data's files (one or several paths or globs: JSON / JSONL, CSV, Parquet), read by "
            "`datasets.load_dataset(dataset_name, data_files=...)`; a plain list is the dataset's `train` split."
        },
    )
    dataset_config: str | None = field(
        default=None,
        metadata={"help": "The `datasets` configuration name of a hub dataset (`load_dataset(..., name=...)`)."},
    )
    dataset_columns: dict | str | None = field(
        default=None,
        metadata={
            "help": "Which column holds each row field, for data read through `datasets`: a mapping (YAML) or JSON "
            "object (command line) with keys `question`, `options` (a column holding a list, or a list of columns, "
            "one per letter), `answer` (a letter or the option's text), `image` (a path relative to the data "
            "files' folder or `image_root`, bytes, base64 data URI or a `datasets` Image), `modality`, `id`, "
            "`source`. Unset keys default to the column of the key's own name where it exists (options: also "
            "columns A, B, ...)."
        },
    )
    image_root: str | None = field(
        default=None,
        metadata={
            "help": "Folder that relative image paths are read from (data read through `datasets`: default the "
            "data files' folder; `huatuo`, `pmc_vqa`, `omnimedvqa`: default their own image folder)."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "A local copy of the dataset (or its hub id); default: the dataset's hub id, or for `sample` its "
            "cached build. For data read through `datasets` (`csv`, `json`, a hub id, ...): `load_dataset`'s "
            "`data_dir`, a folder of data files (or a hub repository's sub-folder)."
        },
    )
    split_file: str | None = field(
        default=None,
        metadata={
            "help": "Split manifest listing the row ids to train on (`medvlm-trl make-split` writes them), e.g. "
            "MedVLM-R1's 600 MRI training questions or the study's 10K PMC-VQA subset."
        },
    )
    dataset_train_split: str = field(
        default="train",
        metadata={"help": "Split of the dataset to train on."},
    )
    skip_bad_rows: bool = field(
        default=False,
        metadata={
            "help": "Drop rows that break the row contract (answer not among the options, 2-6 options, ...) and "
            "report how many were dropped per reason, instead of stopping at the first one. Training images are then "
            "decoded once before the first step, so an unreadable one is dropped and counted too."
        },
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Train on the first N rows only (for quick runs); all rows when unset."},
    )
    test_manifests: list[str] | None = field(
        default=None,
        metadata={
            "help": "Test split manifests the training rows must not overlap (checked before the first step with "
            "`medvlm_trl.data.audit`), e.g. MedVLM-R1's MRI/CT/X-ray test sets."
        },
    )
    allow_split_overlap: bool = field(
        default=False,
        metadata={
            "help": "Train even when training rows also appear in a test manifest (the overlap is still reported). "
            "Off by default: a leaked test item inflates the reported accuracy."
        },
    )

    def __post_init__(self):
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"max_train_samples must be at least 1, got {self.max_train_samples}")
        if isinstance(self.test_manifests, str):  # a single path written as a YAML scalar
            self.test_manifests = [self.test_manifests]
        if isinstance(self.data_files, str):
            self.data_files = [self.data_files]
        if self.dataset_columns is not None:
            from medvlm_trl.data.generic import parse_columns

            self.dataset_columns = parse_columns(self.dataset_columns) or None


@dataclass
class MedVLMGRPOConfig(RunSafetyArguments, GRPOConfig):
    r"""TRL's `GRPOConfig` with the fields the two papers add: a named loss preset, the images' pixel bounds, the
    rewards by recipe name, the prompt template and the semantic judge (and run safety's `overwrite_output_dir`, see
    `medvlm_trl.run_safety`).

    `loss_type` and `scale_rewards` default to "unset" here so that an explicit value can be told from TRL's default:
    with a `loss_preset`, an unset field takes the preset's value and an explicit, different one is an error; without
    a preset, an unset field takes TRL's default (`dapo`, `group`).

    Example:
    ```python
    args = MedVLMGRPOConfig(output_dir="runs/x", loss_preset="dr_grpo", beta=0.04)
    args.loss_type, args.scale_rewards  # ("dr_grpo", "none")
    ```
    """

    _VALID_DICT_FIELDS = GRPOConfig._VALID_DICT_FIELDS + ["semantic_judge_kwargs"]

    loss_preset: str | None = field(
        default=None,
        metadata={
            "help": "The paper's objective by name, mapped onto TRL's own loss fields: `grpo` (loss_type=grpo, "
            "scale_rewards=group: advantage (r - mean) / std over the group, each response's loss divided by its "
            "length) or `dr_grpo` (loss_type=dr_grpo, scale_rewards=none: advantage r - mean, the loss divided by "
            "a constant, batch x max_completion_length). An explicit `loss_type` or `scale_rewards` that "
            "contradicts the preset is an error. Unset: TRL's own fields decide.",
            "choices": list(LOSS_PRESETS),
        },
    )
    loss_type: str | None = field(
        default=None,
        metadata={
            "help": "TRL's loss formulation (`grpo`, `dr_grpo`, `dapo`, `bnpo`, `cispo`, `sapo`, `luspo`, `vespo`; "
            "see `trl.GRPOConfig`). Unset: the `loss_preset`'s value, else TRL's default `dapo`."
        },
    )
    scale_rewards: str | None = field(
        default=None,
        metadata={
            "help": "TRL's advantage scaling: `group` (divide by the group's std), `batch`, or `none` (booleans "
            "map to group/none). Unset: the `loss_preset`'s value, else TRL's default `group`."
        },
    )
    min_pixels: int = field(
        default=DEFAULT_MIN_PIXELS,
        metadata={
            "help": "Fewest pixels of an image after the model's resize (3136 = 56x56, Qwen2-VL's own bound; at "
            "least one image token of the model's processor: 28x28 for Qwen2-VL / Qwen2.5-VL, 32x32 for Qwen3-VL / "
            "Qwen3.5). Every image is resized once, before generation, to the grid of the model's own processor, so "
            "policy, reference model and vLLM see the same pixels."
        },
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata={
            "help": "Most pixels of an image after the model's resize (the RL-MedVQA study: 401408 = 512 image "
            "tokens of Qwen2-VL's 28x28 pixels). Bounds the prompt length, since GRPO truncates no prompt."
        },
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Rewards by recipe name, in order: `format`, `accuracy` (MedVLM-R1 section 3), `semantic`, "
            "`ecr`, `cwr` (RL-MedVQA study sections 3.2-3.3); see `medvlm_trl.rewards.get_reward_funcs`. Their "
            "weights are TRL's `reward_weights`, in the same order. Required by `medvlm-trl grpo`."
        },
    )
    prompt_template: str = field(
        default="r1",
        metadata={
            "help": "Prompt the `prompt` column is built with: `r1` (MedVLM-R1 Fig. 1, think/answer tags), "
            "`study` (the RL-MedVQA study's think/answer prompt) or `simple` (a bare letter, the baselines' prompt).",
            "choices": list(TEMPLATES),
        },
    )
    semantic_judge_model: str | None = field(
        default=None,
        metadata={
            "help": "Model id or local path of the causal LM that judges the reasoning for the `semantic` reward "
            "(the study uses a medical LLM, e.g. BioMistral/BioMistral-7B). Required when `semantic` is listed."
        },
    )
    semantic_judge_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "More `SemanticJudgeReward` arguments as a dict (YAML) or a JSON string (CLI), e.g. "
            '`{"dtype": "bfloat16", "batch_size": 16}`.'
        },
    )
    semantic_judge_prompt: str = field(
        default="paper",
        metadata={
            "help": "The semantic judge's prompt: `paper` (the RL-MedVQA study's Fig. 1 text word for word, as the "
            "study's recipes use it) or `fenced` (our wording, with the reasoning fenced and cleaned so that it cannot "
            "pose as the prompt's own text: the one to prefer when training for real, since GRPO optimises against "
            "whatever the judge can be talked into). See `medvlm_trl.rewards.judge`.",
            "choices": ["paper", "fenced"],
        },
    )
    length_weight: float | None = field(
        default=None,
        metadata={"help": "Scale of the `ecr` / `cwr` length rewards (their maximum); the rewards' default if unset."},
    )
    length_target: int | None = field(
        default=None,
        metadata={
            "help": "Reasoning length at which the `ecr` / `cwr` rewards reach their maximum; the rewards' default "
            "(in words) if unset."
        },
    )
    length_tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer (id or path) whose tokens the `ecr` / `cwr` rewards count; whitespace-separated "
            "words when unset."
        },
    )

    def __post_init__(self):
        self._resolve_loss_preset()
        super().__post_init__()
        if isinstance(self.semantic_judge_kwargs, str):  # GRPOConfig parses only strings that start with "{"
            self.semantic_judge_kwargs = json.loads(self.semantic_judge_kwargs)
        check_template(self.prompt_template, "prompt_template")
        check_pixel_bounds(self.min_pixels, self.max_pixels)
        if isinstance(self.reward_funcs, str):  # a single name written as a YAML scalar
            self.reward_funcs = [self.reward_funcs]
        if self.reward_funcs is not None and self.reward_weights is not None:
            if len(self.reward_weights) != len(self.reward_funcs):
                raise ValueError(
                    f"reward_weights has {len(self.reward_weights)} entries but reward_funcs names "
                    f"{len(self.reward_funcs)} rewards ({self.reward_funcs}); give one weight per reward, in order"
                )
        if self.semantic_judge_prompt not in ("paper", "fenced"):
            raise ValueError(f"semantic_judge_prompt must be `paper` or `fenced`, got {self.semantic_judge_prompt!r}")
        if self.reward_funcs and "semantic" in self.reward_funcs and not self.semantic_judge_model:
            raise ValueError("reward_funcs lists `semantic`, which needs semantic_judge_model (a model id or path)")

    def _resolve_loss_preset(self) -> None:
        """Fill `loss_type` / `scale_rewards` from the preset (or TRL's defaults) and refuse contradictions."""
        self.scale_rewards = _normalise_scale_rewards(self.scale_rewards)
        if self.loss_preset is None:
            for name, default in TRL_LOSS_DEFAULTS.items():
                if getattr(self, name) is None:
                    setattr(self, name, default)
            return
        if self.loss_preset not in LOSS_PRESETS:
            raise ValueError(f"loss_preset must be one of {sorted(LOSS_PRESETS)}, got {self.loss_preset!r}")
        for name, value in LOSS_PRESETS[self.loss_preset].items():
            given = getattr(self, name)
            if given is None:
                setattr(self, name, value)
            elif given != value:
                raise ValueError(
                    f"loss_preset={self.loss_preset!r} sets {name}={value!r}, but {name}={given!r} was given; "
                    f"remove {name} from the recipe, or drop loss_preset to choose TRL's loss fields yourself"
                )
        # `multi_objective_aggregation` has a default both presets agree with, so any other value was set on purpose.
        if self.multi_objective_aggregation != PRESET_AGGREGATION:
            raise ValueError(
                f"loss_preset={self.loss_preset!r} normalises the summed reward of each completion "
                f"(multi_objective_aggregation={PRESET_AGGREGATION!r}), but "
                f"multi_objective_aggregation={self.multi_objective_aggregation!r} was given"
            )


# Baselines (`medvlm-trl sft`, `medvlm-trl dpo`)


@dataclass
class BaselineScriptArguments(MedVLMScriptArguments):
    """The GRPO recipes' data arguments plus what `GRPOConfig` holds for GRPO but `SFTConfig` / `DPOConfig` lack: the
    prompt template and the images' pixel bounds (same key names, so one recipe override set serves every trainer)."""

    prompt_template: str = field(
        default="simple",
        metadata={"help": f"Prompt template by name, one of {sorted(TEMPLATES)}; the baselines use `simple`."},
    )
    min_pixels: int = field(
        default=DEFAULT_MIN_PIXELS, metadata={"help": "Lower bound of image pixels after the model's resize rule."}
    )
    max_pixels: int = field(
        default=DEFAULT_MAX_PIXELS,
        metadata={"help": "Upper bound of image pixels after the model's resize rule (the study: 401408)."},
    )
    merge_lora: bool = field(
        default=True,
        metadata={
            "help": "With `use_peft`, save the merged full model in `output_dir` (the adapter in `output_dir/adapter`), "
            "so evaluation loads a LoRA run like any other checkpoint."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        check_template(self.prompt_template, "prompt_template")
        check_pixel_bounds(self.min_pixels, self.max_pixels)


@dataclass
class MedVLMSFTConfig(RunSafetyArguments, SFTConfig):
    """TRL's `SFTConfig` plus run safety's `overwrite_output_dir` (`medvlm_trl.run_safety`); nothing else changes."""


@dataclass
class DPOScriptArguments(BaselineScriptArguments):
    """[`BaselineScriptArguments`] plus the seed that picks each item's rejected option."""

    rejected_seed: int = field(
        default=42,
        metadata={
            "help": "Seed of the draw of each item's rejected (wrong) option; the pair depends on it and the item id."
        },
    )


@dataclass
class MedVLMDPOConfig(RunSafetyArguments, DPOConfig):
    """TRL's `DPOConfig` plus run safety's `overwrite_output_dir` (`medvlm_trl.run_safety`); nothing else changes."""


# Evaluation (`medvlm-trl eval`)


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
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            if value < 1 and name not in ("min_pixels", "max_pixels"):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_pixel_bounds(self.min_pixels, self.max_pixels)  # training's rule (the model's floor: at load time)
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
        check_template(self.prompt, "prompt")
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


# The dataclasses each training command parses (with `trl.ModelConfig`), by command (`medvlm_trl.recipe`).
TRAINING_ARGUMENTS: dict[str, tuple[type, type]] = {
    "grpo": (MedVLMScriptArguments, MedVLMGRPOConfig),
    "sft": (BaselineScriptArguments, MedVLMSFTConfig),
    "dpo": (DPOScriptArguments, MedVLMDPOConfig),
}
