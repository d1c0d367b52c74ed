"""The two dataclasses every GRPO recipe fills: `MedVLMScriptArguments` (the data) and `MedVLMGRPOConfig` (TRL's
`GRPOConfig` plus what the papers add). Together with `trl.ModelConfig` they are what `medvlm-trl grpo` parses, so
the `help` text of each field below is the documentation of the recipe key of the same name.

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
from typing import Any

from trl import GRPOConfig

from medvlm_trl.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
from medvlm_trl.data.prompts import TEMPLATES
from medvlm_trl.run_safety import RunSafetyArguments

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


def check_pixel_bounds(min_pixels: int, max_pixels: int) -> None:
    """Refuse bounds no model can meet (a recipe is checked before any model is known). The model's own floor, one
    image token of its processor's `image_factor` squared pixels, is checked once its processor is loaded
    (`medvlm_trl.data.images.pin_processor_pixels`): below it the resize would silently exceed `max_pixels`."""
    if not 1 <= min_pixels <= max_pixels:
        raise ValueError(f"need 1 <= min_pixels <= max_pixels, got min_pixels={min_pixels}, max_pixels={max_pixels}")


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
        if self.prompt_template not in TEMPLATES:
            raise ValueError(f"prompt_template must be one of {sorted(TEMPLATES)}, got {self.prompt_template!r}")
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
