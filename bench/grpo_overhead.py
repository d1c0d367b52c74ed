"""What MedVLMGRPOTrainer costs over plain `trl.GRPOTrainer`: the same tiny Qwen2-VL, seed, data and settings, one
training step of each in turn, timed from step begin to step end; prints `ratio: X.XX` (ours / plain). Goal: <= 1.03.

Our extra work per step is one RGB conversion and resize per row (MedVLM-R1 section 4.1 images, bounded as in the
RL-MedVQA study), the per-modality reward means and two extra completion-log columns. For a like-for-like comparison
the pixel bounds equal the tiny processor's own, so both trainers put the same number of image tokens in every
prompt (checked before timing); the plain trainer lets the processor resize the same raw images.

    python bench/grpo_overhead.py --rounds 30

Steps alternate (ours, plain, plain, ours, ...) so that drift in machine load hits both alike; the first round is a
warm-up and is not counted. Each step is timed twice: by the CPU time of this process (torch on one thread by default,
so that this counts work done, not time spent waiting for a core another process holds) and by the wall clock. The
ratio printed is the median over rounds of (our step / the plain step next to it) in CPU time, which a shared, busy
machine disturbs least; `--clock wall` uses the wall clock instead (the better measure on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def low_token_share(completion_ids, **kwargs):
    """A reward with variance on a random model, so both trainers do a full backward pass."""
    return [sum(t < 512 for t in ids) / max(len(ids), 1) for ids in completion_ids]


def make_rows(n: int, size: int):
    from PIL import Image

    from medvlm_trl.data.prompts import build_prompt

    options = ["CT", "MRI", "X-ray", "Ultrasound"]
    rows = []
    for i in range(n):
        # Grayscale slices of a few shapes, as MRI / CT exports are.
        image = Image.linear_gradient("L").resize((size, size - 32 * (i % 3))).rotate(15 * i)
        rows.append(
            {
                "id": f"bench-{i}",
                "image": image,
                "question": "Which imaging modality is shown?",
                "options": options,
                "answer": "B",
                "modality": ["MRI", "CT"][i % 2],
                "prompt": build_prompt("Which imaging modality is shown?", options, "r1"),
            }
        )
    return rows


class StepTimer:
    """CPU and wall time of each optimizer step (generation, rewards, forward, backward, optimizer)."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer.start = (time.process_time(), time.perf_counter())

            def on_step_end(self, args, state, control, **kwargs):
                timer.times["cpu"].append(time.process_time() - timer.start[0])
                timer.times["wall"].append(time.perf_counter() - timer.start[1])

        self.times: dict[str, list[float]] = {"cpu": [], "wall": []}
        self.start = (0.0, 0.0)
        self.callback = _Callback()


def build(kind: str, model_path: str, dataset, args_kwargs: dict):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from medvlm_trl import MedVLMGRPOConfig, MedVLMGRPOTrainer

    processor = AutoProcessor.from_pretrained(model_path, padding_side="left")
    size = processor.image_processor.size
    model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch.float32)
    if kind == "ours":
        config = MedVLMGRPOConfig(
            **args_kwargs, min_pixels=size.shortest_edge, max_pixels=size.longest_edge, loss_type="grpo"
        )
        trainer_cls = MedVLMGRPOTrainer
    else:
        config = GRPOConfig(**args_kwargs, loss_type="grpo")
        trainer_cls = GRPOTrainer
    trainer = trainer_cls(
        model=model, reward_funcs=[low_token_share], args=config, train_dataset=dataset, processing_class=processor
    )
    timer = StepTimer()
    trainer.add_callback(timer.callback)
    trainer.remove_callback(PrinterCallback)  # no log line per step
    return trainer, timer


def image_tokens(trainer, dataset) -> list[int]:
    """Image tokens each trainer puts in the prompts of the first rows, by its own preprocessing."""
    rows = [dataset[i] for i in range(min(4, len(dataset)))]
    if hasattr(trainer, "_prepare_row_images"):
        rows = trainer._prepare_row_images(rows)
    grids = trainer.processing_class.image_processor(images=[r["image"] for r in rows], return_tensors="pt")
    return (grids["image_grid_thw"].prod(dim=1) // 4).tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed steps per trainer (after one warm-up)")
    parser.add_argument("--rows", type=int, default=8, help="distinct questions in the dataset")
    parser.add_argument("--image-size", type=int, default=512, help="side of the raw images, in pixels")
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--completion-length", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="which step time the ratio uses")
    parser.add_argument("--json", help="also write the timings to this file")
    args = parser.parse_args(argv)
    for name in ("rounds", "rows", "image_size", "prompts_per_step", "generations", "completion_length", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    warnings.filterwarnings("ignore")

    import torch
    import transformers
    from datasets import Dataset

    from medvlm_trl.tiny import tiny_vlm_path

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    model_path = str(tiny_vlm_path())
    dataset = Dataset.from_list(make_rows(args.rows, args.image_size))
    common = dict(
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=args.prompts_per_step * args.generations,
        num_generations=args.generations,
        max_completion_length=args.completion_length,
        max_steps=1,  # one step per `train()` call, so the two trainers can alternate
        learning_rate=1e-5,
        beta=0.04,  # a reference model, as both papers use: its forward pass is timed too
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        disable_tqdm=True,
    )
    scratch = tempfile.mkdtemp(prefix="grpo_overhead-")
    trainers = {}
    for kind in ("ours", "plain"):
        trainers[kind] = build(kind, model_path, dataset, {**common, "output_dir": os.path.join(scratch, kind)})
    tokens = {kind: image_tokens(trainer, dataset) for kind, (trainer, _) in trainers.items()}
    if tokens["ours"] != tokens["plain"]:
        raise SystemExit(f"the trainers disagree on image tokens per prompt: {tokens}; the comparison would be unfair")

    for round_ in range(args.rounds + 1):
        order = ("ours", "plain") if round_ % 2 == 0 else ("plain", "ours")
        for kind in order:
            torch.manual_seed(args.seed + round_)  # both trainers sample from the same state in a round
            trainers[kind][0].train()
    print(f"image tokens per prompt (both): {tokens['ours']}")
    print(f"rounds timed: {args.rounds}")
    record: dict = {"settings": vars(args)}
    for clock in ("wall", "cpu"):
        times = {kind: timer.times[clock][1:] for kind, (_, timer) in trainers.items()}  # drop the warm-up
        medians = {kind: statistics.median(t) for kind, t in times.items()}
        paired = statistics.median(ours / plain for ours, plain in zip(times["ours"], times["plain"]))
        steps = ", ".join(f"{kind} median {medians[kind] * 1000:.1f} ms" for kind in ("ours", "plain"))
        print(
            f"{clock:>4} time: {steps}; ratio of medians {medians['ours'] / medians['plain']:.3f}; paired {paired:.3f}"
        )
        record[clock] = {"paired_ratio": paired, "medians_s": medians, "times_s": times}
    ratio = record[args.clock]["paired_ratio"]
    print(f"ratio: {ratio:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
