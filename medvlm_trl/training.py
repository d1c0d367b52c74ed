"""What the three training commands share (`medvlm-trl grpo | sft | dpo`): the rows, the leakage audit, the datasets,
the processor with the run's pixel bounds, saving, the model card and the body of `main`.

Each command module (`medvlm_trl.grpo`, `.sft`, `.dpo`) is a short `train(script_args, training_args, model_args)`
over these pieces plus its own parser, as TRL's `scripts/grpo.py` is; none imports another.

    parse (medvlm_trl.recipe) -> prepare_run (medvlm_trl.runs) -> load_train_rows -> check_split_overlap
      -> prompt_dataset (GRPO) | image_dataset (SFT, DPO) -> trainer.train -> save (+ write_card)
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from medvlm_trl.errors import BadRowError, ImageLoadError, RecipeError, wrapped_errors

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# Rows and the leakage audit


def load_train_rows(script_args) -> list[dict]:
    """Contract rows from the registry (bad rows raised, or dropped and counted), cut to `max_train_samples`."""
    from medvlm_trl.data.generic import script_data_kwargs
    from medvlm_trl.data.registry import load_rows
    from medvlm_trl.data.schema import SkipReport

    report = SkipReport()
    # An unknown dataset, a missing or mismatched split file, unreadable data: one line naming the dataset.
    with wrapped_errors(RecipeError, f"dataset {script_args.dataset_name!r}: "):
        rows = load_rows(
            script_args.dataset_name,
            script_args.dataset_train_split,
            data_dir=script_args.data_dir,
            split_file=script_args.split_file,
            skip_bad_rows=script_args.skip_bad_rows,
            report=report,
            **script_data_kwargs(script_args),
        )
    if script_args.max_train_samples is not None:
        rows = rows[: script_args.max_train_samples]
    if script_args.skip_bad_rows:
        # Loaders check only that image files exist (images stay lazy); a corrupt one would otherwise stop training at
        # its first step. With skip_bad_rows the training rows are decoded once here, and unreadable ones counted.
        from medvlm_trl.data.hub import image_check
        from medvlm_trl.data.schema import filter_rows

        rows = list(filter_rows(rows, skip_bad_rows=True, report=report, extra_check=image_check("decode")))
    if report.total:
        logger.warning("%s", report)
    if not rows:
        raise RecipeError(
            f"dataset {script_args.dataset_name!r} (split {script_args.dataset_train_split!r}) has no training rows"
        )
    return rows


def check_split_overlap(rows: list[dict], script_args) -> None:
    """Stop before the first step when training rows leak into a test manifest (id, image file, pixels, question),
    unless `allow_split_overlap`; see `medvlm_trl.data.audit`."""
    if not script_args.test_manifests:
        return
    from medvlm_trl.data.audit import assert_no_leakage

    # A training row's image, decoded here to hash it, fails naming that row; a leak is a LeakageError; a missing
    # or malformed test manifest is named by its key.
    with wrapped_errors(RecipeError, "test_manifests: "):
        assert_no_leakage(rows, script_args.test_manifests, allow_overlap=script_args.allow_split_overlap)


def require_model_name(model_args) -> str:
    """The recipe's `model_name_or_path`; a `RecipeError` when it is missing."""
    if not model_args.model_name_or_path:
        raise RecipeError("model_name_or_path is required (a model id such as Qwen/Qwen2-VL-2B-Instruct, or a path)")
    return model_args.model_name_or_path


# ---------------------------------------------------------------------------------------------------------------------
# Datasets


def prompt_dataset(rows: list[dict], prompt_template: str):
    """GRPO's training `Dataset`: each row with its conversational `prompt` (built by `medvlm_trl.data.prompts`);
    the trainer prepares the images at each step."""
    from datasets import Dataset

    from medvlm_trl.data.prompts import add_prompt

    return Dataset.from_list([{**row, **add_prompt(row, prompt_template)} for row in rows])


def prepared_images(row: dict, script_args, factor: int) -> list:
    """A row's images loaded and resized once to the model's grid within the run's pixel bounds."""
    from medvlm_trl.data.images import prepare_image
    from medvlm_trl.data.schema import row_images

    bounds = (script_args.min_pixels, script_args.max_pixels)
    return [prepare_image(v, *bounds, row_id=str(row.get("id")), factor=factor) for v in row_images(row)]


def image_dataset(
    rows: list[dict],
    make_example: Callable[[dict], dict],
    script_args,
    report=None,
    *,
    factor: int,
):
    """The baselines' `datasets.Dataset`: examples with their images prepared once, written to the datasets cache in
    batches.

    `factor` is the model processor's `image_factor` (what `load_pinned_processor` returns with the processor).

    Every image is read here, before training starts, so an unreadable one fails with the row's id (or, with
    `skip_bad_rows`, is dropped and counted in `report`) instead of failing inside the collator mid-run.
    """
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    from medvlm_trl.data.schema import SkipReport

    report = report if report is not None else SkipReport()
    kept = 0

    def generate() -> Iterator[dict]:
        nonlocal kept
        for row in rows:
            try:
                images = prepared_images(row, script_args, factor)
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


# ---------------------------------------------------------------------------------------------------------------------
# The model's processor and init kwargs (the baselines hand TRL the model by name)


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


def pin_pixels(processor, min_pixels: int, max_pixels: int, model_name: str) -> int | None:
    """Give `processor` the run's pixel bounds (`medvlm_trl.data.images.pin_processor_pixels`); bounds below one image
    token of the model are a `RecipeError` naming it. Returns the processor's `image_factor`."""
    from medvlm_trl.data.images import pin_processor_pixels

    with wrapped_errors(RecipeError, f"{model_name}: "):
        return pin_processor_pixels(processor, min_pixels, max_pixels)


def load_pinned_processor(script_args, training_args, model_args):
    """The processor TRL would load for the model and its `image_factor`, with the run's pixel bounds set before the
    trainer sees a row: the images are resized to them on the processor's own grid, so its own resize is the
    identity, and the saved processor records them. Bounds below one image token of the model are a `RecipeError`."""
    from transformers import AutoProcessor

    from medvlm_trl.loading import load_pretrained

    processor = load_pretrained(
        AutoProcessor.from_pretrained,
        model_args.model_name_or_path,
        "processor (model_name_or_path)",
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    factor = pin_pixels(processor, script_args.min_pixels, script_args.max_pixels, model_args.model_name_or_path)
    if factor is None:
        raise RecipeError(
            f"{model_args.model_name_or_path}: its processor has no image processor; the baselines train "
            "vision-language models"
        )
    return processor, factor


# ---------------------------------------------------------------------------------------------------------------------
# Saving and the model card


def write_card(
    output_dir,
    script_args,
    training_args,
    model_args,
    *,
    method: str,
    rows: list[dict],
    recipe: str | None,
    prompt_template: str,
    card_keys: Sequence[str],
) -> None:
    """The model card (`medvlm_trl.model_card`): base model, split fingerprint, recipe and hyper-parameters."""
    from medvlm_trl.data.generic import dataset_label
    from medvlm_trl.model_card import run_hyperparameters, split_fingerprint, write_model_card
    from medvlm_trl.runs.record import setting_changes

    write_model_card(
        output_dir,
        base_model=model_args.model_name_or_path,
        method=method,
        dataset_name=dataset_label(script_args),
        split=script_args.dataset_train_split,
        split_id=split_fingerprint(rows),
        split_file=script_args.split_file,
        recipe=recipe,
        prompt_template=prompt_template,
        hyperparameters=run_hyperparameters(training_args, model_args, card_keys),
        setting_changes=setting_changes(output_dir),
    )


# Hyper-parameters of a baseline written into its model card, besides LoRA's.
BASELINE_CARD_KEYS = (
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


def card_hyperparameters(training_args, model_args) -> dict[str, Any]:
    """A baseline's hyper-parameters as its model card lists them."""
    from medvlm_trl.model_card import run_hyperparameters

    return run_hyperparameters(training_args, model_args, BASELINE_CARD_KEYS)


def save_trained(trainer, script_args, training_args, model_args, *, method: str, rows: list[dict], recipe: str | None):
    """Save a baseline's final model (LoRA merged when asked), its processor and the model card into `output_dir`."""
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
        write_card(
            out,
            script_args,
            training_args,
            model_args,
            method=method,
            rows=rows,
            recipe=recipe,
            prompt_template=script_args.prompt_template,
            card_keys=BASELINE_CARD_KEYS,
        )


# ---------------------------------------------------------------------------------------------------------------------
# The baselines' body and every training command's main


def train_baseline(
    trainer_cls, method: str, example: Callable[[dict], dict], script_args, training_args, model_args, recipe
):
    """The body both baselines share: rows checked against the test split, examples built (images resized once),
    TRL's `trainer_cls` (given the processor with the run's pixel bounds) trained with the run record callback, then
    model, processor and card saved."""
    from trl import get_peft_config

    from medvlm_trl.runs.callback import RunInfoCallback

    require_model_name(model_args)
    apply_model_init_kwargs(training_args, model_args)
    rows = load_train_rows(script_args)
    check_split_overlap(rows, script_args)
    processor, factor = load_pinned_processor(script_args, training_args, model_args)
    dataset = image_dataset(rows, example, script_args, factor=factor)
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


def run_main(parser, train_fn, argv: Sequence[str] | None) -> int:
    """The body of `medvlm-trl grpo`, `sft` and `dpo`: parse (unknown recipe keys refused), claim the output folder,
    train. A bad recipe, bad data, a model that cannot be loaded or a refused output folder raises a `MedVLMError`,
    which `medvlm_trl.cli.error_boundary` reports in one line (exit status 2)."""
    from medvlm_trl.recipe import config_path, parse_args
    from medvlm_trl.runs.prepare import prepare_run

    argv = list(sys.argv[1:] if argv is None else argv)  # as typed: the run record keeps the command line
    script_args, training_args, model_args = parse_args(argv, parser, fail_with_unknown_args=True)
    # One run per output dir; resume only from a whole checkpoint; a run record next to every checkpoint.
    with wrapped_errors(RecipeError):  # a split file or recipe that cannot be read to record its hash
        prepare_run(training_args, script_args, argv=argv, model_args=model_args)
    trainer = train_fn(script_args, training_args, model_args, recipe=config_path(argv))
    trainer.accelerator.print(f"saved the model, its processor and its card to {os.fspath(training_args.output_dir)}")
    trainer.end()  # finish the trackers, destroy the process group
    return 0


__all__ = [
    "apply_model_init_kwargs",
    "card_hyperparameters",
    "check_split_overlap",
    "image_dataset",
    "load_pinned_processor",
    "load_train_rows",
    "pin_pixels",
    "prepared_images",
    "prompt_dataset",
    "require_model_name",
    "run_main",
    "save_trained",
    "train_baseline",
    "write_card",
]
