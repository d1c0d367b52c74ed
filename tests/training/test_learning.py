"""GRPO and Dr.GRPO actually learn: on a task the tiny random Qwen2-VL can learn, the mean reward climbs.

The task: a reward that favours a fixed part of the vocabulary (the share of completion tokens whose id is below 512,
about half the tokens of a random model). Measured on this model with these settings, the mean reward goes from about
0.5 to above 0.95 in 24 steps under either preset, falls towards 0 with the advantage sign flipped, and stays near 0.5
(within about +-0.1 step to step) when the loss does not reach the weights; the assertions sit between those outcomes.
"""

import statistics

import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from medvlm_trl import MedVLMGRPOConfig, MedVLMGRPOTrainer
from medvlm_trl.data.prompts import build_prompt

STEPS = 24
WINDOW = 4  # steps averaged at the start and at the end


def low_vocabulary_share(completion_ids, **kwargs):
    return [sum(t < 512 for t in ids) / max(len(ids), 1) for ids in completion_ids]


def rows():
    options = ["CT", "MRI", "X-ray", "Ultrasound"]
    return [
        {
            "id": f"row-{i}",
            "image": Image.linear_gradient("L").resize((64 + 16 * i, 64)).convert("RGB"),
            "question": "Which imaging modality is shown?",
            "options": options,
            "answer": "B",
            "modality": "MRI",
            "prompt": build_prompt("Which imaging modality is shown?", options, "r1"),
        }
        for i in range(2)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["grpo", "dr_grpo"])
def test_mean_reward_climbs(tiny_vlm, tmp_path, preset):
    args = MedVLMGRPOConfig(
        output_dir=str(tmp_path),
        loss_preset=preset,
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=16,
        num_generations=8,
        max_completion_length=8,
        max_steps=STEPS,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        min_pixels=4 * 28 * 28,
        max_pixels=16 * 28 * 28,
    )
    trainer = MedVLMGRPOTrainer(
        model=AutoModelForImageTextToText.from_pretrained(tiny_vlm, dtype=torch.float32),
        reward_funcs=[low_vocabulary_share],
        args=args,
        train_dataset=Dataset.from_list(rows() * 8),
        processing_class=AutoProcessor.from_pretrained(tiny_vlm, padding_side="left"),
    )
    trainer.train()

    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    assert len(rewards) == STEPS
    start, end = statistics.fmean(rewards[:WINDOW]), statistics.fmean(rewards[-WINDOW:])
    assert end >= 0.8, rewards
    assert end - start >= 0.25, rewards
