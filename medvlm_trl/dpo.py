"""The DPO baseline on TRL's `DPOTrainer`, with Qwen2-VL images.

The RL-MedVQA study (Zhu et al., Table 1, "DPO" row) trains a DPO baseline on its PMC-VQA subset but does not say how
preference pairs were made from multiple-choice items. We build them the simplest way the data allows, and say so in
the recipe and the README: for each item,

    chosen   = the correct option's letter,
    rejected = one wrong option's letter, drawn uniformly with `random.Random(f"{rejected_seed}:{row_id}")`,

so a pair depends only on the seed and the item (not on row order or on which other rows were filtered out), and
re-running gives the same pairs. Prompts use the simple template, as the SFT baseline does, so both baselines answer
with a single letter and are scored by the same rule.

    medvlm-trl dpo --config recipes/rl_medvqa/dpo_qwen2vl_2b_instruct.yaml
"""

from __future__ import annotations

import random
import sys

from medvlm_trl.cli import error_boundary
from medvlm_trl.configs import DPOScriptArguments, MedVLMDPOConfig
from medvlm_trl.data.prompts import build_prompt
from medvlm_trl.data.schema import LETTERS, num_images
from medvlm_trl.recipe import training_parser
from medvlm_trl.training import run_main, train_baseline

PROG = "medvlm-trl dpo"


def rejected_letter(row: dict, seed: int) -> str:
    """A wrong option's letter for `row`, drawn with a generator seeded by `seed` and the row id.

    >>> rejected_letter({"id": "q1", "options": ["CT", "MRI"], "answer": "A"}, seed=0)
    'B'
    """
    letters = LETTERS[: len(row["options"])]
    wrong = [letter for letter in letters if letter != row["answer"]]
    if not wrong:
        raise ValueError(f"row {row.get('id')!r}: no wrong option to reject (answer {row['answer']!r}, {letters})")
    return random.Random(f"{seed}:{row['id']}").choice(wrong)


def preference_example(row: dict, template: str = "simple", seed: int = 42) -> dict:
    """One contract row as TRL's conversational preference example (images added by `build_dataset`)."""
    return {
        "id": str(row["id"]),
        "prompt": build_prompt(row["question"], row["options"], template, num_images=num_images(row)),
        "chosen": [{"role": "assistant", "content": row["answer"]}],
        "rejected": [{"role": "assistant", "content": rejected_letter(row, seed)}],
    }


def train(script_args: DPOScriptArguments, training_args, model_args, recipe: str | None = None):
    """Run the DPO baseline and return the trainer. With beta > 0 DPO needs a reference model: TRL loads a frozen copy
    of the same checkpoint (or, with LoRA, uses the base model with the adapter switched off)."""
    from trl import DPOTrainer

    def example(row: dict) -> dict:
        return preference_example(row, script_args.prompt_template, script_args.rejected_seed)

    return train_baseline(DPOTrainer, "dpo", example, script_args, training_args, model_args, recipe)


def make_dpo_parser():
    return training_parser("dpo", PROG)


@error_boundary("dpo")
def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl dpo --config recipe.yaml [--key value ...]`."""
    return run_main(make_dpo_parser(), train, argv)


__all__ = ["DPOScriptArguments", "MedVLMDPOConfig", "make_dpo_parser", "main", "preference_example", "rejected_letter"]


if __name__ == "__main__":
    sys.exit(main())
