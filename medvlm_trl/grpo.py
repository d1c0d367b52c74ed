"""`medvlm-trl grpo --config RECIPE.yaml [--key value ...]`: GRPO / Dr.GRPO on Qwen2-VL from one YAML recipe.

The same script trains MedVLM-R1 (Pan et al., section 4.1: Qwen2-VL-2B, 600 MRI questions, format + accuracy
rewards) and every RL row of the RL-MedVQA study (Zhu et al., arXiv:2505.13973, section 4: GRPO, + semantic judge,
+ ECR / CWR length rewards, Dr.GRPO); the recipes in `recipes/` hold all their hyper-parameters. As with `trl grpo`,
three dataclasses are filled from the recipe and the command line (which wins): `MedVLMScriptArguments` (the data),
`MedVLMGRPOConfig` (training; both in `medvlm_trl.configs`) and `trl.ModelConfig` (the model, LoRA). Unlike
`trl grpo`, a recipe key that none of them knows is an error, not something silently handed on (`medvlm_trl.recipe`).
What the three training commands share (rows, leakage audit, saving, model card) is `medvlm_trl.training`.

It runs under `accelerate launch` as well:

    accelerate launch -m medvlm_trl.grpo --config recipes/.../config.yaml
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from medvlm_trl import training
from medvlm_trl.cli import error_boundary
from medvlm_trl.configs import MedVLMGRPOConfig, MedVLMScriptArguments
from medvlm_trl.errors import RecipeError, wrapped_errors
from medvlm_trl.recipe import (  # noqa: F401 (importable from here, as before)
    PARSER_KEYS,
    check_recipe,
    one_line_errors,
    recipe_keys,
    training_parser,
    unknown_keys,
    wrong_value_types,
)
from medvlm_trl.recipe import parse_args as parse_recipe_args
from medvlm_trl.training import (  # noqa: F401 (importable from here, as before)
    check_split_overlap,
    load_train_rows,
    pin_pixels,
    require_model_name,
    run_main,
)
from medvlm_trl.training import prompt_dataset as build_dataset

logger = logging.getLogger(__name__)

PROG = "medvlm-trl grpo"


def make_parser(prog: str = PROG):
    return training_parser("grpo", prog)


def require_vllm_if_used(training_args) -> None:
    """`use_vllm: true` without vLLM installed: a `RecipeError` before any data or model is loaded (TRL would raise
    its ImportError only once the model is in memory)."""
    import importlib.util

    if getattr(training_args, "use_vllm", False) and importlib.util.find_spec("vllm") is None:
        raise RecipeError(
            "use_vllm is true, but vLLM is not installed: install the extra on a GPU machine "
            "(pip install -e '.[vllm]'), or set --use_vllm false to generate with transformers"
        )


def load_model_and_processor(model_args, training_args: MedVLMGRPOConfig):
    """The VLM with `AutoModelForImageTextToText` (ModelConfig's dtype and attention) and its processor, padding left."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import get_quantization_config

    from medvlm_trl.loading import load_pretrained, resolve_dtype

    require_model_name(model_args)
    with wrapped_errors(RecipeError, "dtype: "):
        dtype = resolve_dtype(torch, model_args.dtype)
    quantization_config = get_quantization_config(model_args)
    kwargs: dict[str, Any] = {}
    if quantization_config is not None:  # QLoRA: bitsandbytes needs the weights placed on this process's device
        from accelerate import PartialState

        kwargs = {"quantization_config": quantization_config, "device_map": {"": PartialState().local_process_index}}
    model = load_pretrained(
        AutoModelForImageTextToText.from_pretrained,
        model_args.model_name_or_path,
        "model (model_name_or_path)",
        revision=model_args.model_revision,
        dtype=dtype,
        attn_implementation=model_args.attn_implementation,
        trust_remote_code=training_args.trust_remote_code,
        **kwargs,
    )
    processor = load_pretrained(
        AutoProcessor.from_pretrained,
        model_args.model_name_or_path,
        "processor (model_name_or_path)",
        revision=model_args.model_revision,
        padding_side="left",
        trust_remote_code=training_args.trust_remote_code,
    )
    # The processor's own grid and floor (one image token); the trainer pins the same bounds again.
    pin_pixels(processor, training_args.min_pixels, training_args.max_pixels, model_args.model_name_or_path)
    if model_args.model_revision != "main" and training_args.model_init_kwargs is None:
        # TRL loads the reference model (beta > 0) from the policy's name with these kwargs: same revision.
        training_args.model_init_kwargs = {"revision": model_args.model_revision}
    return model, processor


def _import_reward(path: str):
    module_name, _, attr = path.rpartition(".")
    sys.path.insert(0, os.getcwd())  # as `trl grpo` does, so a recipe can name a module next to it
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise RecipeError(f"reward {path!r} cannot be imported: {err}") from err


def build_reward_funcs(training_args: MedVLMGRPOConfig) -> list:
    """The recipe's rewards in order: registry names (`format`, `accuracy`, `semantic`, `ecr`, `cwr`) or dotted paths."""
    from medvlm_trl.rewards import SemanticJudgeReward, get_reward_funcs

    names = list(training_args.reward_funcs or [])
    if not names:
        raise RecipeError("reward_funcs is required, e.g. [format, accuracy] (MedVLM-R1)")
    registry_names = [name for name in names if "." not in name]
    try:
        from_registry = iter(
            get_reward_funcs(
                registry_names,
                semantic_judge_model=training_args.semantic_judge_model,
                semantic_judge_kwargs=training_args.semantic_judge_kwargs,
                semantic_judge_prompt=training_args.semantic_judge_prompt,
                length_weight=training_args.length_weight,
                length_target=training_args.length_target,
                length_tokenizer=training_args.length_tokenizer,
            )
            if registry_names
            else []
        )
    except ValueError as err:  # an unknown reward name, a bad length setting
        raise RecipeError(f"reward_funcs: {err}") from err
    funcs = [_import_reward(name) if "." in name else next(from_registry) for name in names]
    for func in funcs:  # a judge that cannot be found fails here, not at the first step after the policy has loaded
        if isinstance(func, SemanticJudgeReward):
            func.check_available()
    return funcs


# Hyper-parameters written into the model card, besides LoRA's.
CARD_KEYS = (
    "loss_preset",
    "loss_type",
    "scale_rewards",
    "beta",
    "learning_rate",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "max_completion_length",
    "temperature",
    "reward_funcs",
    "reward_weights",
    "prompt_template",
    "min_pixels",
    "max_pixels",
    "bf16",
    "seed",
    "use_vllm",
)


def write_card(script_args, training_args, model_args, rows: list[dict], recipe: str | None) -> None:
    """The model card (`medvlm_trl.model_card`): base model, split fingerprint, recipe and hyper-parameters."""
    training.write_card(
        training_args.output_dir,
        script_args,
        training_args,
        model_args,
        method="grpo" if training_args.loss_preset is None else training_args.loss_preset,
        rows=rows,
        recipe=recipe,
        prompt_template=training_args.prompt_template,
        card_keys=CARD_KEYS,
    )


def train(script_args: MedVLMScriptArguments, training_args: MedVLMGRPOConfig, model_args, recipe: str | None = None):
    """The TRL-style script body: rows, rewards, model, `MedVLMGRPOTrainer`, train; then the model, its processor and
    its card are saved into `output_dir`. Returns the trainer."""
    from trl import get_peft_config

    from medvlm_trl.runs.callback import RunInfoCallback
    from medvlm_trl.trainer import MedVLMGRPOTrainer

    require_vllm_if_used(training_args)
    reward_funcs = build_reward_funcs(training_args)
    rows = load_train_rows(script_args)
    check_split_overlap(rows, script_args)
    dataset = build_dataset(rows, training_args.prompt_template)
    model, processor = load_model_and_processor(model_args, training_args)
    trainer = MedVLMGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),  # None: full fine-tuning
    )
    trainer.add_callback(RunInfoCallback(script_args))
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    # The processor is saved too, with the pixel bounds of training, so evaluation sees images as training did.
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json: the logged rewards per step, also for runs that keep no checkpoint
    if trainer.accelerator.is_main_process:
        write_card(script_args, training_args, model_args, rows, recipe)
    return trainer


def parse_args(argv: Sequence[str] | None = None, parser=None):
    """(script_args, training_args, model_args) from `--config RECIPE.yaml` and `--key value` overrides; a key that
    none of the parser's dataclasses knows is an error naming it (`medvlm_trl.recipe.parse_args`)."""
    return parse_recipe_args(argv, parser if parser is not None else make_parser(), fail_with_unknown_args=True)


@error_boundary("grpo")
def main(argv: Sequence[str] | None = None) -> int:
    """`medvlm-trl grpo --config RECIPE.yaml [--key value ...]`."""
    return run_main(make_parser(), train, argv)


if __name__ == "__main__":
    sys.exit(main())
