"""Held-out strict accuracy against GRPO step and wall time in the phantom world: our trainer vs plain TRL, GRPO vs
Dr.GRPO, several seeds; a printed table, a PNG and a JSON of every point under `bench/results/`.

Every run starts from the tiny base model (`medvlm_trl.tiny_base`) and trains on the phantom MRI training split
with MedVLM-R1's format + accuracy rewards, the r1 prompt and the settings of `recipes/tiny/grpo_phantom.yaml`:

- `ours-grpo`: `medvlm-trl grpo`'s trainer (`MedVLMGRPOTrainer`, `loss_preset: grpo`), built as the CLI builds it;
- `ours-dr_grpo`: the same with `loss_preset: dr_grpo`;
- `trl-grpo`: plain `trl.GRPOTrainer` with our reward functions and the same settings (`loss_type="grpo"`).

Every `--eval-every` steps the policy answers the 300 held-out, letter-balanced MRI test questions greedily and is
scored by MedVLM-R1's strict rule; the time spent evaluating is not counted in the wall or CPU time. CPU time of the
process is recorded too, since the wall time of a shared machine says little.

    python bench/learning_curve.py                                   # all three runs, seeds 0 1 2
    python bench/learning_curve.py --runs ours-grpo --seeds 0 --steps 60 --eval-every 30   # a quick look
    python bench/learning_curve.py --jobs 2                          # two runs at a time, one thread each

Every run trains on one CPU thread (`torch.set_num_threads(1)`), the trajectory `tests/training/
test_phantom_learning.py` replays; `--jobs N` runs N of them side by side in their own processes, so their wall
times are those of a machine running N runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECIPE = ROOT / "recipes" / "tiny" / "grpo_phantom.yaml"
RUNS = ("ours-grpo", "ours-dr_grpo", "trl-grpo")


def strict_accuracy(model, processor, rows: list[dict], batch_size: int = 100) -> float:
    """Greedy r1-prompt answers of `model`, scored by MedVLM-R1's strict rule; accuracy in %."""
    import torch

    from medvlm_trl.data.prompts import build_prompt
    from medvlm_trl.eval.scoring import score_strict

    was_training = model.training
    model.eval()
    processor.tokenizer.padding_side = "left"
    correct = 0.0
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        texts = [
            processor.apply_chat_template(build_prompt(r["question"], r["options"], "r1"), add_generation_prompt=True)
            for r in batch
        ]
        enc = processor(text=texts, images=[r["image"] for r in batch], return_tensors="pt", padding=True)
        enc = enc.to(model.device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=24, do_sample=False)
        completions = processor.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        correct += sum(score_strict(c, r["answer"]) for c, r in zip(completions, batch))
    model.train(was_training)
    return 100.0 * correct / len(rows)


def _curve_callback(rows, processor, every: int, points: list):
    from transformers import TrainerCallback

    class HeldOutCurve(TrainerCallback):
        def __init__(self):
            self.eval_time = self.eval_cpu = 0.0

        def on_train_begin(self, args, state, control, model=None, **kw):
            self.t0, self.c0 = time.time(), time.process_time()
            self._point(0, model)

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % every == 0 or state.global_step == state.max_steps:
                self._point(state.global_step, model)

        def _point(self, step, model):
            wall = time.time() - self.t0 - self.eval_time
            cpu = time.process_time() - self.c0 - self.eval_cpu
            t, c = time.time(), time.process_time()
            acc = strict_accuracy(model, processor, rows)
            self.eval_time += time.time() - t
            self.eval_cpu += time.process_time() - c
            points.append({"step": step, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "accuracy": acc})
            print(f"  step {step:4d}  train wall {wall:7.1f} s  strict MRI accuracy {acc:5.1f}%", flush=True)

    return HeldOutCurve()


def run_one(
    name: str, seed: int, steps: int | None, every: int | None, test_rows: list[dict], data_dir: str | None = None
) -> list[dict]:
    """One training run (`steps`: the recipe's `max_steps` if None) on the phantom set (or the one in `data_dir`);
    returns its curve points, held-out accuracy every `every` steps (None: at the start and the end only)."""
    import shutil

    import yaml
    from transformers import AutoProcessor

    from medvlm_trl.tiny_base import tiny_base_path

    steps = steps or yaml.safe_load(RECIPE.read_text())["max_steps"]
    base = str(tiny_base_path())
    processor = AutoProcessor.from_pretrained(base)
    points: list[dict] = []
    callback = _curve_callback(test_rows, processor, every or steps, points)
    out = tempfile.mkdtemp(prefix=f"learning-curve-{name}-")
    try:
        if name.startswith("ours"):
            preset = name.split("-", 1)[1]
            argv = ["--config", str(RECIPE), "--model_name_or_path", base, "--output_dir", out, "--seed", str(seed)]
            argv += ["--max_steps", str(steps), "--loss_preset", preset, "--disable_tqdm", "true"]
            argv += ["--data_dir", data_dir] if data_dir else []
            trainer = _our_trainer(argv)
        else:
            trainer = _plain_trl_trainer(base, out, seed, steps, data_dir)
        trainer.add_callback(callback)
        trainer.train()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return points


def _our_trainer(argv: list[str]):
    """`MedVLMGRPOTrainer` built from a recipe and overrides as `medvlm_trl.grpo.train` builds it."""
    from medvlm_trl import grpo
    from medvlm_trl.trainer import MedVLMGRPOTrainer

    script_args, training_args, model_args = grpo.parse_args(argv)
    rows = grpo.load_train_rows(script_args)
    model, processor = grpo.load_model_and_processor(model_args, training_args)
    return MedVLMGRPOTrainer(
        model=model,
        reward_funcs=grpo.build_reward_funcs(training_args),
        args=training_args,
        train_dataset=grpo.build_dataset(rows, training_args.prompt_template),
        processing_class=processor,
    )


def _plain_trl_trainer(base: str, out: str, seed: int, steps: int, data_dir: str | None = None):
    """Plain `trl.GRPOTrainer` with our rewards and the recipe's settings (issue 15, test 5c)."""
    import yaml
    from datasets import Dataset
    from PIL import Image
    from trl import GRPOConfig, GRPOTrainer

    from medvlm_trl.data.phantom import load_phantom
    from medvlm_trl.data.prompts import add_prompt
    from medvlm_trl.rewards import accuracy_reward, format_reward

    recipe = yaml.safe_load(RECIPE.read_text())
    rows = [
        {
            **add_prompt(r),
            "image": Image.open(r["image"]).convert("RGB"),
            "answer": r["answer"],
            "options": r["options"],
        }
        for r in load_phantom("train", root=data_dir)
    ]
    keys = (
        "beta num_generations temperature max_completion_length per_device_train_batch_size learning_rate "
        "lr_scheduler_type gradient_accumulation_steps"
    ).split()
    config = GRPOConfig(
        output_dir=out,
        loss_type="grpo",
        scale_rewards="group",
        max_steps=steps,
        seed=seed,
        bf16=False,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        **{k: recipe[k] for k in keys},
    )
    return GRPOTrainer(
        model=base, reward_funcs=[format_reward, accuracy_reward], args=config, train_dataset=Dataset.from_list(rows)
    )


def _mri_test_rows() -> list[dict]:
    from PIL import Image

    from medvlm_trl.data.phantom import load_phantom

    return [{**r, "image": Image.open(r["image"]).convert("RGB")} for r in load_phantom("test", modality="MRI")]


def _one_thread_run(name: str, seed: int, steps: int, every: int, test_rows: list[dict] | None = None) -> list[dict]:
    """`run_one` on one CPU thread (a worker process loads the test rows itself)."""
    import torch

    torch.set_num_threads(1)
    print(f"{name}, seed {seed}: {steps} steps", flush=True)
    return run_one(name, seed, steps, every, test_rows if test_rows is not None else _mri_test_rows())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="GRPO steps (default: the recipe's max_steps)")
    parser.add_argument("--eval-every", type=int, default=30)
    parser.add_argument("--machine", default="cpu-2core", help="label of the machine, for the results file")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side, each in its own one-thread process")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    import yaml

    from medvlm_trl.eval.scoring import random_guess_accuracy

    steps = args.steps or yaml.safe_load(RECIPE.read_text())["max_steps"]
    test_rows = _mri_test_rows()
    chance = random_guess_accuracy(test_rows, by=None)["all"]
    jobs = [(name, seed) for name in args.runs for seed in args.seeds]
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {job: pool.submit(_one_thread_run, *job, steps, args.eval_every) for job in jobs}
            results = {f"{name}/seed{seed}": future.result() for (name, seed), future in futures.items()}
    else:
        results = {
            f"{name}/seed{seed}": _one_thread_run(name, seed, steps, args.eval_every, test_rows) for name, seed in jobs
        }

    date = datetime.date.today().isoformat()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    title = f"# Learning curve in the phantom world ({date}, {args.machine}, {args.jobs} run(s) at a time, load average"
    table = [f"{title} {load:.1f} at the end)", ""]
    table += [f"Strict MRI accuracy (%) on 300 held-out letter-balanced questions; random guess {chance:.1f}%.", ""]
    table += ["| run | step | accuracy: mean (min-max over seeds) | train wall s (mean) | CPU s (mean) |"]
    table += ["|---|---|---|---|---|"]
    for name in args.runs:
        curves = [results[f"{name}/seed{s}"] for s in args.seeds]
        for i, point in enumerate(curves[0]):
            accs = [c[i]["accuracy"] for c in curves]
            wall = statistics.mean(c[i]["wall_s"] for c in curves)
            cpu = statistics.mean(c[i]["cpu_s"] for c in curves)
            spread = f"{statistics.mean(accs):.1f} ({min(accs):.1f}-{max(accs):.1f})"
            table.append(f"| {name} | {point['step']} | {spread} | {wall:.0f} | {cpu:.0f} |")
    text = "\n".join(table)
    print("\n" + text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"learning_curve_{args.machine}_{date}"
    stem.with_suffix(".md").write_text(text + "\n")
    payload = {"date": date, "machine": args.machine, "load_average": load, "chance": chance, "runs": results}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    _plot(results, args.runs, args.seeds, chance, stem.with_suffix(".png"))
    print(f"\nwrote {stem}.md, .json, .png")
    return 0


def _plot(results, runs, seeds, chance, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100, sharey=True)
    for name, color in zip(runs, ("C0", "C1", "C2")):
        for j, seed in enumerate(seeds):
            pts = results[f"{name}/seed{seed}"]
            label = name if j == 0 else None
            axes[0].plot([p["step"] for p in pts], [p["accuracy"] for p in pts], color=color, alpha=0.7, label=label)
            axes[1].plot([p["wall_s"] for p in pts], [p["accuracy"] for p in pts], color=color, alpha=0.7)
    for ax, xlabel in zip(axes, ("GRPO step", "training wall time (s)")):
        ax.axhline(chance, color="grey", ls=":", label="random guess" if xlabel == "GRPO step" else None)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("strict MRI accuracy (%), 300 held-out")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
