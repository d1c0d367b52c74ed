"""Can the tiny Qwen2-VL learn to read a phantom at all? Supervised held-out accuracy of the lesion-size answer against
training step, under a short prompt and under MedVLM-R1's r1 prompt, at two learning rates; a printed table and a
JSON under `bench/results/`.

Why it exists: GRPO from the tiny base model does not raise held-out accuracy in the phantom world (issue 15). This
probe takes reinforcement learning out of the question and gives the model the answer itself. A fresh random tiny
Qwen2-VL of the base model's size (`medvlm_trl.tiny_base.BASE_TEXT_CONFIG`, 112 x 112 pixels, 16 image tokens) is
trained with cross-entropy over the three size words at the last prompt position, on phantom `size` questions (one
lesion: small, medium or large), and scored on 150 held-out MRI test rows by the word it ranks first:

- `short`: the image, then `How large is the lesion?` (about 25 tokens in all);
- `r1`: the image, then the row's question, its option lines and MedVLM-R1's r1 instructions (about 130 tokens),
  the prompt every phantom recipe uses.

The gap between the two is the measured reason why the image barely reaches the answer in a few hundred steps under
the r1 prompt: the 16 image tokens are a small part of a long prompt.

    python bench/perception_probe.py                       # both prompts, lr 1e-3 and 3e-3, seeds 0 1
    python bench/perception_probe.py --prompts short --lrs 1e-3 --seeds 0 --steps 50    # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORDS = ("small", "medium", "large")


def _model_and_processor(seed: int):
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from medvlm_trl.tiny import build_processor, build_tokenizer, qwen2_vl_config
    from medvlm_trl.tiny_base import BASE_MAX_PIXELS, BASE_MIN_PIXELS, BASE_TEXT_CONFIG, BASE_VISION_CONFIG

    tokenizer = build_tokenizer(extra_corpus=[f"How large is the lesion? {' '.join(WORDS)}"])
    processor = build_processor(tokenizer, min_pixels=BASE_MIN_PIXELS, max_pixels=BASE_MAX_PIXELS)
    processor.tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(qwen2_vl_config(tokenizer, BASE_TEXT_CONFIG, BASE_VISION_CONFIG))
    return model, processor


def _messages(row: dict, prompt: str) -> list[dict]:
    from medvlm_trl.data.prompts import build_prompt

    if prompt == "r1":
        return build_prompt(row["question"], row["options"], "r1")
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How large is the lesion?"}]}]


def _word_logits(model, processor, rows: list[dict], prompt: str, word_ids: list[int]):
    texts = [
        processor.apply_chat_template(_messages(r, prompt), tokenize=False, add_generation_prompt=True) + "Size:"
        for r in rows
    ]
    enc = processor(text=texts, images=[r["image"] for r in rows], return_tensors="pt", padding=True)
    return model(**enc).logits[:, -1, word_ids]


def probe(prompt: str, lr: float, seed: int, steps: int, eval_every: int, batch_size: int = 16) -> list[dict]:
    """One run: (step, held-out accuracy %, training seconds) every `eval_every` steps."""
    import torch

    from medvlm_trl.data.phantom import make_items

    model, processor = _model_and_processor(seed)
    pieces = [processor.tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in WORDS]
    if any(len(p) != 1 for p in pieces):  # the loss ranks single tokens: a word split in two would be half-scored
        raise SystemExit(f"perception_probe: the tiny tokenizer splits a size word: {dict(zip(WORDS, pieces))}")
    word_ids = [p[0] for p in pieces]
    train = make_items("coldstart", "MRI", steps * batch_size, types=("size",), balanced=False)
    test = make_items("test", "MRI", 150, types=("size",))
    truth = torch.tensor([WORDS.index(r["finding"]) for r in test])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    points, trained = [], 0.0

    def evaluate(step: int) -> None:
        model.eval()
        with torch.no_grad():
            guess = torch.cat(
                [_word_logits(model, processor, test[i : i + 50], prompt, word_ids) for i in (0, 50, 100)]
            )
        acc = 100.0 * (guess.argmax(1) == truth).float().mean().item()
        points.append({"step": step, "accuracy": acc, "train_s": round(trained, 1)})
        print(f"  {prompt:5s} lr {lr:g} seed {seed} step {step:4d}: accuracy {acc:5.1f}%", flush=True)
        model.train()

    evaluate(0)
    for step in range(1, steps + 1):
        start = time.perf_counter()
        batch = train[(step - 1) * batch_size : step * batch_size]
        labels = torch.tensor([WORDS.index(r["finding"]) for r in batch])
        loss = torch.nn.functional.cross_entropy(_word_logits(model, processor, batch, prompt, word_ids), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        trained += time.perf_counter() - start
        if step % eval_every == 0:
            evaluate(step)
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--prompts", nargs="+", default=["short", "r1"], choices=["short", "r1"])
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 3e-3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--out", default=None, help="JSON file for every point (default: print only)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    runs = {}
    for prompt in args.prompts:
        for lr in args.lrs:
            runs[f"{prompt} lr {lr:g}"] = [probe(prompt, lr, s, args.steps, args.eval_every) for s in args.seeds]
    print("\n| prompt, learning rate | step | accuracy %: mean (min-max over seeds) |")
    print("|---|---|---|")
    for name, per_seed in runs.items():
        for i, point in enumerate(per_seed[0]):
            accs = [seed_points[i]["accuracy"] for seed_points in per_seed]
            print(f"| {name} | {point['step']} | {statistics.mean(accs):.1f} ({min(accs):.1f}-{max(accs):.1f}) |")
    if args.out:
        record = {"date": datetime.date.today().isoformat(), "seeds": args.seeds, "steps": args.steps, "runs": runs}
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
