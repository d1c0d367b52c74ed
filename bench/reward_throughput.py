"""Throughput of the rule-based rewards: score N completions (default 100,000) with format, accuracy, ECR and CWR and
print completions per second for each.

    python bench/reward_throughput.py [--n 100000] [--conversational] [--batch 64]

The completions mimic a GRPO run on MedVLM-R1's prompt: well-formed answers (right and wrong letters), letters with
extra text, option texts, broken tags and long reasoning. They are scored in batches of `--batch` (the number of
completions one `GRPOTrainer` step hands a reward), the way TRL calls a reward.
"""

from __future__ import annotations

import argparse
import random
import time

from medvlm_trl.data.schema import LETTERS
from medvlm_trl.rewards import accuracy_reward, cwr_length_reward, ecr_length_reward, format_reward

OPTIONS = [
    ["Normal", "Labral pathology", "Fracture", "Effusion"],
    ["Yes", "No"],
    ["CT", "MRI", "X-ray", "Ultrasound", "PET", "Angiography"],
]
REASONING = (
    "The image is an MRI of the hip. There is an abnormal high signal along the acetabular labrum on the fluid-"
    "sensitive sequence, without a fracture line or a joint effusion, which points to labral pathology. "
)


def make_completions(n: int, seed: int = 0) -> tuple[list[str], list[str], list[list[str]]]:
    rng = random.Random(seed)
    completions, answers, options = [], [], []
    for _ in range(n):
        opts = rng.choice(OPTIONS)
        letter = LETTERS[rng.randrange(len(opts))]
        think = REASONING * rng.randint(0, 6)
        kind = rng.random()
        if kind < 0.4:
            content = letter
        elif kind < 0.6:
            content = LETTERS[rng.randrange(len(opts))]
        elif kind < 0.7:
            content = f"{letter}: {opts[LETTERS.index(letter)]}"
        elif kind < 0.8:
            content = opts[LETTERS.index(letter)].lower()
        elif kind < 0.9:
            content = f"{letter} or {LETTERS[(LETTERS.index(letter) + 1) % len(opts)]}"
        else:
            completions.append(f"{think}The answer is {letter}.")  # no tags at all
            answers.append(letter)
            options.append(opts)
            continue
        completions.append(f"<think>{think}</think>\n<answer>{content}</answer>")
        answers.append(letter)
        options.append(opts)
    return completions, answers, options


def bench(fn, completions, kwargs, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(completions), batch):
        fn(completions[i : i + batch], **{k: v[i : i + batch] for k, v in kwargs.items()})
    return len(completions) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of completions")
    parser.add_argument("--batch", type=int, default=64, help="completions per reward call")
    parser.add_argument("--conversational", action="store_true", help="TRL's conversational form instead of strings")
    args = parser.parse_args(argv)

    completions, answers, options = make_completions(args.n)
    if args.conversational:
        completions = [[{"role": "assistant", "content": c}] for c in completions]
    columns = {"answer": answers, "options": options}
    form = "conversational" if args.conversational else "str"
    print(f"{args.n} completions ({form}), batches of {args.batch}")
    total = 0.0
    for fn, kwargs in [
        (format_reward, {}),
        (accuracy_reward, columns),
        (ecr_length_reward, {}),
        (cwr_length_reward, columns),
    ]:
        rate = bench(fn, completions, kwargs, args.batch)
        total += args.n / rate
        print(f"{fn.__name__:>20}: {rate:>12,.0f} completions/s")
    print(f"{'all four':>20}: {args.n / total:>12,.0f} completions/s")


if __name__ == "__main__":
    main()
