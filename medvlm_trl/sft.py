"""The SFT baselines (full fine-tuning and LoRA) on TRL's `SFTTrainer`, with Qwen2-VL images.

MedVLM-R1 (Pan et al., section 4, "SFT" row of Table 1) compares GRPO with supervised fine-tuning on the same 600 MRI
items: negative log-likelihood of the final answer only, under the simple prompt ("provide the correct single-letter
choice"). The RL-MedVQA study (Zhu et al., Table 1) has the same baseline as full fine-tuning and as LoRA. Each
training row becomes TRL's prompt-completion form,

    prompt:     [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "<question + options> ..."}]}]
    completion: [{"role": "assistant", "content": "B"}]
    images:     [<the row's image, resized once to the model's grid within min_pixels..max_pixels>]

and `completion_only_loss: true` makes TRL's `DataCollatorForVisionLanguageModeling` label only the completion: the
answer letter and the end-of-turn marker the chat template closes it with. Prompt, system turn and image tokens carry
the label -100.

    medvlm-trl sft --config recipes/medvlm_r1/sft_qwen2vl_2b.yaml

Every recipe key is a field of [`BaselineScriptArguments`], `trl.SFTConfig` or `trl.ModelConfig`; an unknown key is an
error (TRL would pass it on to `accelerate launch` silently).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import SFTConfig

from medvlm_trl.configs import MedVLMScriptArguments, check_pixel_bounds
from medvlm_trl.data.images import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    ImageLoadError,
    pin_processor_pixels,
    prepare_image,
)
from medvlm_trl.data.prompts import TEMPLATES, build_prompt
from medvlm_trl.data.schema import BadRowError, SkipReport
from medvlm_trl.grpo import (
    RecipeError,
    check_split_overlap,
    load_train_rows,
    one_line_errors,
    require_model_name,
    run_main,
)
from medvlm_trl.loading import load_pretrained
from medvlm_trl.run_safety import RunInfoCallback, RunSafetyArguments

logger = logging.getLogger(__name__)


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
        if self.prompt_template not in TEMPLATES:
            raise ValueError(f"prompt_template {self.prompt_template!r} is not one of {sorted(TEMPLATES)}")
        check_pixel_bounds(self.min_pixels, self.max_pixels)


def sft_example(row: dict, template: str = "simple") -> dict:
    """One contract row as TRL's prompt-completion example (images left out; see [`build_dataset`]).

    >>> sft_example({"question": "Which modality?", "options": ["CT", "MRI"], "answer": "B", "id": "r1"})["completion"]
    [{'role': 'assistant', 'content': 'B'}]
    """
    return {
        "id": str(row["id"]),
        "prompt": build_prompt(row["question"], row["options"], template, num_images=_num_images(row)),
        "completion": [{"role": "assistant", "content": row["answer"]}],
    }


def _num_images(row: dict) -> int:
    return len(row["images"]) if row.get("images") else 1


def _row_images(row: dict, script_args: BaselineScriptArguments, factor: int) -> list:
    values = row["images"] if row.get("images") else [row.get("image")]
    bounds = (script_args.min_pixels, script_args.max_pixels)
    return [prepare_image(v, *bounds, row_id=str(row.get("id")), factor=factor) for v in values]


def build_dataset(
    rows: list[dict],
    make_example: Callable[[dict], dict],
    script_args: BaselineScriptArguments,
    report: SkipReport | None = None,
    *,
    factor: int,
):
    """A `datasets.Dataset` of examples with their images prepared once, written to the datasets cache in batches.

    `factor` is the model processor's `image_factor` (what `load_pinned_processor` returns with the processor).

    Every image is read here, before training starts, so an unreadable one fails with the row's id (or, with
    `skip_bad_rows`, is dropped and counted in `report`) instead of failing inside the collator mid-run.
    """
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    report = report if report is not None else SkipReport()
    kept = 0

    def generate() -> Iterator[dict]:
        nonlocal kept
        for row in rows:
            try:
                images = _row_images(row, script_args, factor)
            except ImageLoadError as err:
                if not script_args.skip_bad_rows:
                    raise
                report.add(BadRowError(str(row.get("id")), "unreadable_image", str(err)))
                continue
            kept += 1
            yield {**make_example(row), "images": images}

    try:
        # Cached by the datasets library under a hash of the rows and settings: a re-run reads the prepared images
        # back instead of resizing them again (and then has nothing new to report).
        dataset = Dataset.from_generator(generate)
    except DatasetGenerationError as err:
        # datasets wraps what the generator raised; the row-naming error is the useful one.
        cause = err.__cause__ or err.__context__
        if isinstance(cause, (ImageLoadError, BadRowError)):
            raise cause from None
        if kept == 0:  # datasets refuses a generator that yields nothing: every row was dropped
            raise RecipeError(f"no usable training rows: {report}") from None
        raise
    if report.total:
        logger.warning("%s", report)
    return dataset


@dataclass
class MedVLMSFTConfig(RunSafetyArguments, SFTConfig):
    """TRL's `SFTConfig` plus run safety's `overwrite_output_dir` (`medvlm_trl.run_safety`); nothing else changes."""


def make_parser():
    from trl import ModelConfig, TrlParser

    return one_line_errors(TrlParser((BaselineScriptArguments, MedVLMSFTConfig, ModelConfig), prog="medvlm-trl sft"))


def apply_model_init_kwargs(training_args, model_args) -> None:
    """As TRL's own scripts do: the model is loaded from its name with the `ModelConfig` dtype / attention settings."""
    kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = kwargs


def save_trained(trainer, script_args, training_args, model_args, *, method: str, rows: list[dict], recipe: str | None):
    """Save the final model (LoRA merged when asked), its processor and the model card into `output_dir`."""
    from medvlm_trl.data.generic import dataset_label
    from medvlm_trl.model_card import split_fingerprint, write_model_card
    from medvlm_trl.run_safety import setting_changes

    out = Path(training_args.output_dir)
    if model_args.use_peft and script_args.merge_lora:
        # A folder holding both adapter_config.json and full weights makes transformers load the adapter onto the
        # base model again, so the adapter goes into its own sub-folder.
        trainer.save_model(str(out / "adapter"))
        if trainer.accelerator.is_main_process:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(out)
            trainer.processing_class.save_pretrained(out)
    else:
        trainer.save_model(str(out))
    if trainer.accelerator.is_main_process:
        write_model_card(
            out,
            base_model=model_args.model_name_or_path,
            method=method,
            dataset_name=dataset_label(script_args),
            split=script_args.dataset_train_split,
            split_id=split_fingerprint(rows),
            split_file=script_args.split_file,
            recipe=recipe,
            prompt_template=script_args.prompt_template,
            hyperparameters=card_hyperparameters(training_args, model_args),
            setting_changes=setting_changes(out),
        )


def card_hyperparameters(training_args, model_args) -> dict[str, Any]:
    from medvlm_trl.model_card import run_hyperparameters

    keys = (
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "lr_scheduler_type",
        "warmup_ratio",
        "bf16",
        "seed",
        "beta",
        "loss_type",
        "num_generations",
        "max_completion_length",
        "temperature",
        "scale_rewards",
    )
    return run_hyperparameters(training_args, model_args, keys)


def load_pinned_processor(script_args, training_args, model_args):
    """The processor TRL would load for the model and its `image_factor`, with the run's pixel bounds set before the
    trainer sees a row: the images are resized to them on the processor's own grid, so its own resize is the
    identity, and the saved processor records them. Bounds below one image token of the model are a `RecipeError`."""
    from transformers import AutoProcessor

    processor = load_pretrained(
        AutoProcessor.from_pretrained,
        model_args.model_name_or_path,
        "processor (model_name_or_path)",
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    try:
        factor = pin_processor_pixels(processor, script_args.min_pixels, script_args.max_pixels)
    except ValueError as err:
        raise RecipeError(f"{model_args.model_name_or_path}: {err}") from err
    if factor is None:
        raise RecipeError(
            f"{model_args.model_name_or_path}: its processor has no image processor; the baselines train "
            "vision-language models"
        )
    return processor, factor


def train_baseline(
    trainer_cls, method: str, example: Callable[[dict], dict], script_args, training_args, model_args, recipe
):
    """The body both baselines share: rows checked against the test split, examples built (images resized once),
    TRL's `trainer_cls` (given the processor with the run's pixel bounds) trained with the run record callback, then
    model, processor and card saved."""
    from trl import get_peft_config

    require_model_name(model_args)
    apply_model_init_kwargs(training_args, model_args)
    rows = load_train_rows(script_args)
    check_split_overlap(rows, script_args)
    processor, factor = load_pinned_processor(script_args, training_args, model_args)
    dataset = build_dataset(rows, example, script_args, factor=factor)
    trainer = trainer_cls(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
    )
    trainer.add_callback(RunInfoCallback(script_args))
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    save_trained(trainer, script_args, training_args, model_args, method=method, rows=rows, recipe=recipe)
    return trainer


def train(script_args: BaselineScriptArguments, training_args, model_args, recipe: str | None = None):
    """Run the SFT baseline and return the trainer."""
    from trl import SFTTrainer

    def example(row: dict) -> dict:
        return sft_example(row, script_args.prompt_template)

    return train_baseline(SFTTrainer, "sft", example, script_args, training_args, model_args, recipe)


def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl sft --config recipe.yaml [--key value ...]`."""
    return run_main("medvlm-trl sft", make_parser(), train, argv)
