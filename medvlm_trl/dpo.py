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
from dataclasses import dataclass, field

from trl import DPOConfig

from medvlm_trl.data.prompts import LETTERS, build_prompt
from medvlm_trl.grpo import one_line_errors, run_main
from medvlm_trl.run_safety import RunSafetyArguments
from medvlm_trl.sft import BaselineScriptArguments, train_baseline


@dataclass
class DPOScriptArguments(BaselineScriptArguments):
    """[`BaselineScriptArguments`] plus the seed that picks each item's rejected option."""

    rejected_seed: int = field(
        default=42,
        metadata={
            "help": "Seed of the draw of each item's rejected (wrong) option; the pair depends on it and the item id."
        },
    )


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
    num_images = len(row["images"]) if row.get("images") else 1
    return {
        "id": str(row["id"]),
        "prompt": build_prompt(row["question"], row["options"], template, num_images=num_images),
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


@dataclass
class MedVLMDPOConfig(RunSafetyArguments, DPOConfig):
    """TRL's `DPOConfig` plus run safety's `overwrite_output_dir` (`medvlm_trl.run_safety`); nothing else changes."""


def make_dpo_parser():
    from trl import ModelConfig, TrlParser

    return one_line_errors(TrlParser((DPOScriptArguments, MedVLMDPOConfig, ModelConfig), prog="medvlm-trl dpo"))


def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl dpo --config recipe.yaml [--key value ...]`."""
    return run_main("medvlm-trl dpo", make_dpo_parser(), train, argv)


__all__ = ["DPOScriptArguments", "MedVLMDPOConfig", "make_dpo_parser", "main", "preference_example", "rejected_letter"]
