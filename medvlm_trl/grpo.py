"""`medvlm-trl grpo --config RECIPE.yaml [--key value ...]`: GRPO / Dr.GRPO on Qwen2-VL from one YAML recipe.

The same script trains MedVLM-R1 (Pan et al., section 4.1: Qwen2-VL-2B, 600 MRI questions, format + accuracy
rewards) and every RL row of the RL-MedVQA study (Zhu et al., arXiv:2505.13973, section 4: GRPO, + semantic judge,
+ ECR / CWR length rewards, Dr.GRPO); the recipes in `recipes/` hold all their hyper-parameters. As with `trl grpo`,
three dataclasses are filled from the recipe and the command line (which wins): `MedVLMScriptArguments` (the data),
`MedVLMGRPOConfig` (training) and `trl.ModelConfig` (the model, LoRA). Unlike `trl grpo`, a recipe key that none of
them knows is an error, not something silently handed on.

It runs under `accelerate launch` as well:

    accelerate launch -m medvlm_trl.grpo --config recipes/.../config.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from medvlm_trl.configs import MedVLMGRPOConfig, MedVLMScriptArguments

logger = logging.getLogger(__name__)

PROG = "medvlm-trl grpo"
# Keys of a recipe that are not dataclass fields but that TrlParser itself understands.
PARSER_KEYS = {"env"}


class RecipeError(ValueError):
    """A recipe or command line that cannot describe a run (unknown key, missing value)."""


def make_parser(prog: str = PROG):
    from trl import ModelConfig, TrlParser

    return one_line_errors(TrlParser((MedVLMScriptArguments, MedVLMGRPOConfig, ModelConfig), prog=prog))


def one_line_errors(parser):
    """Make `parser` raise a `RecipeError` naming the flag (`argument --beta: invalid float value: 'high'`) instead
    of printing its whole usage text (some 200 lines for TRL's configs) and exiting; `run_main` prints the one line."""

    def error(message: str):
        raise RecipeError(message)

    parser.error = error
    return parser


def recipe_keys(parser) -> set[str]:
    """Every key a recipe may set: the fields of the parser's dataclasses, plus `env`."""
    return {f.name for dc in parser.dataclass_types for f in dataclasses.fields(dc) if f.init} | PARSER_KEYS


def check_recipe(argv: Sequence[str], parser) -> None:
    """Refuse a `--config` YAML with keys no dataclass knows; TrlParser would pass them on (to `accelerate`)."""
    if "--config" not in argv:
        return
    index = list(argv).index("--config")
    if index + 1 >= len(argv):
        raise RecipeError("--config needs a YAML file")
    path = argv[index + 1]
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            recipe = yaml.safe_load(fh)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise RecipeError(f"{path}: not a readable YAML file ({err})") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping of keys to values")
    unknown = unknown_keys(recipe, recipe_keys(parser))
    if unknown:
        raise RecipeError(f"{path}: unknown recipe key(s): {', '.join(unknown)}")
    wrong = wrong_value_types(recipe, parser)
    if wrong:
        raise RecipeError(f"{path}: wrong value type(s): {'; '.join(wrong)}")


def wrong_value_types(recipe: dict, parser) -> list[str]:
    """Recipe values that a number or yes/no field cannot take. argparse converts only text values; a YAML list or
    mapping (`beta: [0.04]`), a fraction for an integer or a list for a yes/no would reach training unconverted and
    fail deep inside torch, or not at all. A text value (`beta: high`) is converted here as argparse would, so that
    the error names the recipe key, not a `--beta` flag nobody typed."""

    def kind_of(action) -> str | None:
        # By name: TRL wraps the converter of an `int | None` field (to accept "none") under the inner type's name,
        # and TRL's parser and transformers' each have their own `string_to_bool`.
        name = getattr(action.type, "__name__", "")
        return {"int": "int", "float": "float", "string_to_bool": "bool"}.get(name)

    def converts(value: str, action) -> bool:
        try:
            action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            return False
        return True

    def fits(value, kind: str, action, listed: bool) -> bool:
        if isinstance(value, str):  # argparse converts a text default, but not the items of a list default
            return not listed and converts(value, action)
        if kind == "bool":
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return kind == "float" or isinstance(value, int)

    single = {"int": "an integer", "float": "a number", "bool": "true or false"}
    plural = {"int": "integers", "float": "numbers", "bool": "true/false values"}
    actions: dict = {}
    for action in parser._actions:  # a yes/no field that defaults to true also has a `--no_<name>` (no type) alias
        if action.dest not in actions or actions[action.dest].type is None:
            actions[action.dest] = action
    problems = []
    for key, value in recipe.items():
        action = actions.get(key)
        kind = kind_of(action) if action is not None else None
        if kind is None or value is None:
            continue
        listed = action.nargs in ("+", "*")
        if listed and not (isinstance(value, list) and all(fits(v, kind, action, True) for v in value)):
            problems.append(f"{key} needs a list of {plural[kind]}, got {value!r}")
        elif not listed and not fits(value, kind, action, False):
            problems.append(f"{key} needs {single[kind]}, got {value!r}")
    return problems


def unknown_keys(keys, known: set[str]) -> list[str]:
    """The keys not in `known`, sorted, each quoted with a "did you mean" hint where a known key is close."""
    hints = []
    for key in sorted((k for k in keys if k not in known), key=str):
        close = difflib.get_close_matches(str(key), known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return hints


def load_train_rows(script_args: MedVLMScriptArguments) -> list[dict]:
    """Contract rows from the registry (bad rows raised, or dropped and counted), cut to `max_train_samples`."""
    from medvlm_trl.data.generic import script_data_kwargs
    from medvlm_trl.data.images import ImageLoadError
    from medvlm_trl.data.registry import load_rows
    from medvlm_trl.data.schema import BadRowError, SkipReport

    report = SkipReport()
    try:
        rows = load_rows(
            script_args.dataset_name,
            script_args.dataset_train_split,
            data_dir=script_args.data_dir,
            split_file=script_args.split_file,
            skip_bad_rows=script_args.skip_bad_rows,
            report=report,
            **script_data_kwargs(script_args),
        )
    except (BadRowError, ImageLoadError):
        raise
    except (ValueError, OSError) as err:  # an unknown dataset, a missing or mismatched split file, unreadable data
        raise RecipeError(f"dataset {script_args.dataset_name!r}: {err}") from err
    if script_args.max_train_samples is not None:
        rows = rows[: script_args.max_train_samples]
    if script_args.skip_bad_rows:
        # Loaders check only that image files exist (images stay lazy); a corrupt one would otherwise stop training at
        # its first step. With skip_bad_rows the training rows are decoded once here, and unreadable ones counted.
        from medvlm_trl.data.huatuo import image_check
        from medvlm_trl.data.schema import filter_rows

        rows = list(filter_rows(rows, skip_bad_rows=True, report=report, extra_check=image_check("decode")))
    if report.total:
        logger.warning("%s", report)
    if not rows:
        raise RecipeError(
            f"dataset {script_args.dataset_name!r} (split {script_args.dataset_train_split!r}) has no training rows"
        )
    return rows


def build_dataset(rows: list[dict], prompt_template: str):
    """The training `Dataset`: each row with its conversational `prompt` (built by `medvlm_trl.data.prompts`)."""
    from datasets import Dataset

    from medvlm_trl.data.prompts import add_prompt

    return Dataset.from_list([{**row, **add_prompt(row, prompt_template)} for row in rows])


def check_split_overlap(rows: list[dict], script_args: MedVLMScriptArguments) -> None:
    """Stop before the first step when training rows leak into a test manifest (id, image file, pixels, question),
    unless `allow_split_overlap`; see `medvlm_trl.data.audit`."""
    if not script_args.test_manifests:
        return
    from medvlm_trl.data.audit import assert_no_leakage
    from medvlm_trl.data.images import ImageLoadError

    try:
        assert_no_leakage(rows, script_args.test_manifests, allow_overlap=script_args.allow_split_overlap)
    except ImageLoadError:  # a training row's image, decoded here to hash it: the error names that row
        raise
    except (ValueError, OSError) as err:  # a missing or malformed test manifest (a leak is a LeakageError)
        raise RecipeError(f"test_manifests: {err}") from err


def require_model_name(model_args) -> str:
    """The recipe's `model_name_or_path`; a `RecipeError` (one line from `run_main`) when it is missing."""
    if not model_args.model_name_or_path:
        raise RecipeError("model_name_or_path is required (a model id such as Qwen/Qwen2-VL-2B-Instruct, or a path)")
    return model_args.model_name_or_path


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

    from medvlm_trl.data.images import pin_processor_pixels
    from medvlm_trl.loading import load_pretrained

    require_model_name(model_args)
    dtype = model_args.dtype
    if dtype not in (None, "auto"):
        dtype = getattr(torch, dtype)
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
    try:  # the processor's own grid and floor (one image token); the trainer pins the same bounds again
        pin_processor_pixels(processor, training_args.min_pixels, training_args.max_pixels)
    except ValueError as err:
        raise RecipeError(f"{model_args.model_name_or_path}: {err}") from err
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
    from medvlm_trl.data.generic import dataset_label
    from medvlm_trl.model_card import run_hyperparameters, split_fingerprint, write_model_card
    from medvlm_trl.run_safety import setting_changes

    write_model_card(
        training_args.output_dir,
        base_model=model_args.model_name_or_path,
        method="grpo" if training_args.loss_preset is None else training_args.loss_preset,
        dataset_name=dataset_label(script_args),
        split=script_args.dataset_train_split,
        split_id=split_fingerprint(rows),
        split_file=script_args.split_file,
        recipe=recipe,
        prompt_template=training_args.prompt_template,
        hyperparameters=run_hyperparameters(training_args, model_args, CARD_KEYS),
        setting_changes=setting_changes(training_args.output_dir),
    )


def train(script_args: MedVLMScriptArguments, training_args: MedVLMGRPOConfig, model_args, recipe: str | None = None):
    """The TRL-style script body: rows, rewards, model, `MedVLMGRPOTrainer`, train; then the model, its processor and
    its card are saved into `output_dir`. Returns the trainer."""
    from trl import get_peft_config

    from medvlm_trl.run_safety import RunInfoCallback
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
    none of the parser's dataclasses knows is an error naming it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = parser if parser is not None else make_parser()
    check_recipe(argv, parser)
    return parser.parse_args_and_config(args=argv, fail_with_unknown_args=True)


def run_main(prog: str, parser, train_fn, argv: Sequence[str] | None) -> int:
    """The body of `medvlm-trl grpo`, `sft` and `dpo`: parse (unknown recipe keys refused), claim the output folder,
    train. A bad recipe, bad data, a model that cannot be loaded or a refused output folder ends with one line naming
    the problem (exit status 2), not a traceback."""
    from medvlm_trl.data.audit import LeakageError
    from medvlm_trl.data.images import ImageLoadError
    from medvlm_trl.data.schema import BadRowError
    from medvlm_trl.loading import ModelLoadError
    from medvlm_trl.run_safety import RunSafetyError, prepare_run, recipe_path

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        script_args, training_args, model_args = parse_args(argv, parser)
        # One run per output dir; resume only from a whole checkpoint; a run record next to every checkpoint.
        prepare_run(training_args, script_args, argv=argv, model_args=model_args)
    except (ValueError, OSError) as err:  # RecipeError and RunSafetyError are ValueErrors
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    try:
        trainer = train_fn(script_args, training_args, model_args, recipe=recipe_path(argv))
    except (RecipeError, RunSafetyError, BadRowError, ImageLoadError, LeakageError, ModelLoadError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    trainer.accelerator.print(f"saved the model, its processor and its card to {os.fspath(training_args.output_dir)}")
    trainer.end()  # finish the trackers, destroy the process group
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`medvlm-trl grpo --config RECIPE.yaml [--key value ...]`."""
    return run_main(PROG, make_parser(), train, argv)


if __name__ == "__main__":
    sys.exit(main())
