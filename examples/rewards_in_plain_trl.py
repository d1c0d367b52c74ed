"""The papers' rewards in a plain TRL project: `trl.GRPOTrainer` (not medvlm-trl's subclass) trains a Qwen2-VL policy
with MedVLM-R1's format and accuracy rewards, the RL-MedVQA study's length rewards and its semantic judge.

    python examples/rewards_in_plain_trl.py                  # tiny offline models, two steps on a CPU
    python examples/rewards_in_plain_trl.py --model Qwen/Qwen2-VL-2B-Instruct --judge BioMistral/BioMistral-7B

All a dataset needs for these rewards is an `answer` column (the correct letter) and an `options` column (the option
texts); TRL passes every column to every reward. Reward weights are TRL's own `reward_weights`.
"""

from __future__ import annotations

import argparse
import tempfile

from datasets import Dataset
from PIL import Image
from trl import GRPOConfig, GRPOTrainer

from medvlm_trl.rewards import (
    SemanticJudgeReward,
    accuracy_reward,
    cwr_length_reward,
    ecr_length_reward,
    format_reward,
)

INSTRUCTION = (
    "Think through the question step by step inside <think>...</think>, "
    "then give the single letter of the correct option inside <answer>...</answer>."
)
QUESTIONS = [
    ("Which imaging modality is shown?", ["CT", "MRI", "X-ray"], "B"),
    ("Is there a fracture?", ["Yes", "No"], "B"),
    ("Which organ is abnormal?", ["Liver", "Spleen", "Kidney", "Pancreas"], "A"),
    ("What is the plane of this image?", ["Axial", "Coronal", "Sagittal"], "C"),
]


def make_dataset() -> Dataset:
    """Four toy rows with a conversational prompt, an image, and the `answer` / `options` columns the rewards read."""
    rows = []
    for i, (question, options, answer) in enumerate(QUESTIONS):
        lines = "\n".join(f"{'ABCDEF'[j]}) {text}" for j, text in enumerate(options))
        prompt = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": f"{question}\n{lines}\n{INSTRUCTION}"}],
            }
        ]
        image = Image.linear_gradient("L").resize((64 + 16 * i, 64)).convert("RGB")
        rows.append({"prompt": prompt, "image": image, "answer": answer, "options": options})
    return Dataset.from_list(rows)


def main(argv: list[str] | None = None) -> GRPOTrainer:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="policy (default: the tiny offline Qwen2-VL)")
    parser.add_argument("--judge", help="judge causal LM for the semantic reward (default: the tiny offline LM)")
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--output-dir", default=None)
    args = parser.parse_args(argv)

    if args.model is None or args.judge is None:
        from medvlm_trl.tiny import tiny_causal_lm_path, tiny_vlm_path

        args.model = args.model or str(tiny_vlm_path())
        args.judge = args.judge or str(tiny_causal_lm_path())

    reward_funcs = [
        format_reward,
        accuracy_reward,
        ecr_length_reward,
        cwr_length_reward,
        SemanticJudgeReward(args.judge, batch_size=8),
    ]
    config = GRPOConfig(
        output_dir=args.output_dir or tempfile.mkdtemp(prefix="rewards-in-plain-trl-"),
        # The papers' GRPO: TRL's defaults are DAPO with beta=0 (see TRL-NOTES).
        loss_type="grpo",
        beta=0.04,
        reward_weights=[1.0, 1.0, 0.5, 0.5, 0.5],
        num_generations=2,
        per_device_train_batch_size=4,
        max_completion_length=16,
        max_steps=args.max_steps,
        learning_rate=1e-5,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        seed=0,
    )
    trainer = GRPOTrainer(model=args.model, reward_funcs=reward_funcs, args=config, train_dataset=make_dataset())
    trainer.train()
    for name in ("format_reward", "accuracy_reward", "ecr_length_reward", "cwr_length_reward", "semantic_reward"):
        values = [log[f"rewards/{name}/mean"] for log in trainer.state.log_history if f"rewards/{name}/mean" in log]
        print(f"rewards/{name}/mean per step: {values}")
    return trainer


if __name__ == "__main__":
    main()
