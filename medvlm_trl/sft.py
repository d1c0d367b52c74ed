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

Every recipe key is a field of [`BaselineScriptArguments`], [`MedVLMSFTConfig`] (both in `medvlm_trl.configs`) or
`trl.ModelConfig`; an unknown key is an error (TRL would pass it on to `accelerate launch` silently). The body the
baselines share (rows, leakage audit, images prepared once, saving, the model card) is `medvlm_trl.training`.
"""

from __future__ import annotations

import sys

from medvlm_trl.cli import error_boundary
from medvlm_trl.configs import BaselineScriptArguments, MedVLMSFTConfig
from medvlm_trl.data.prompts import build_prompt
from medvlm_trl.data.schema import num_images
from medvlm_trl.recipe import training_parser
from medvlm_trl.training import (  # noqa: F401 (importable from here, as before)
    apply_model_init_kwargs,
    card_hyperparameters,
    load_pinned_processor,
    run_main,
    save_trained,
    train_baseline,
)
from medvlm_trl.training import image_dataset as build_dataset

PROG = "medvlm-trl sft"


def sft_example(row: dict, template: str = "simple") -> dict:
    """One contract row as TRL's prompt-completion example (images left out; see [`build_dataset`]).

    >>> sft_example({"question": "Which modality?", "options": ["CT", "MRI"], "answer": "B", "id": "r1"})["completion"]
    [{'role': 'assistant', 'content': 'B'}]
    """
    return {
        "id": str(row["id"]),
        "prompt": build_prompt(row["question"], row["options"], template, num_images=num_images(row)),
        "completion": [{"role": "assistant", "content": row["answer"]}],
    }


def make_parser():
    return training_parser("sft", PROG)


def train(script_args: BaselineScriptArguments, training_args, model_args, recipe: str | None = None):
    """Run the SFT baseline and return the trainer."""
    from trl import SFTTrainer

    def example(row: dict) -> dict:
        return sft_example(row, script_args.prompt_template)

    return train_baseline(SFTTrainer, "sft", example, script_args, training_args, model_args, recipe)


@error_boundary("sft")
def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl sft --config recipe.yaml [--key value ...]`."""
    return run_main(make_parser(), train, argv)


__all__ = ["BaselineScriptArguments", "MedVLMSFTConfig", "build_dataset", "main", "make_parser", "sft_example", "train"]


if __name__ == "__main__":
    sys.exit(main())
