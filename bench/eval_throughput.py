"""Questions per second of `medvlm-trl eval` on 900 rows, the size of MedVLM-R1's test set (300 MRI, 300 CT, 300 X-ray).

    python bench/eval_throughput.py                                   # tiny offline Qwen2-VL, sample rows, CPU
    python bench/eval_throughput.py --model JZPeterPan/MedVLM-R1 --split MRI_CT_XRAY_300each_dataset.json \
        --dataset huatuo --data-dir /data/huatuo --max-new-tokens 512  # real weights (vLLM when on a GPU)

By default the sample set's test rows are repeated (with new ids) up to `--rows`, and the tiny model answers with
greedy decoding at the tiny processor's pixel bounds. The timed part is exactly `medvlm_trl.eval.run.evaluate`: image
preparation, generation, scoring and the per-batch flush of `predictions.jsonl`. One warm-up batch runs first, into a
separate folder, so model loading and first-call costs are not counted. The result is printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from medvlm_trl.eval.run import EvalArguments, evaluate, load_eval_rows, make_generator, vllm_available


def repeat_rows(rows: list[dict], n: int) -> list[dict]:
    """`rows` cycled to `n` rows, each copy with its own id (the evaluator scores each id once)."""
    return [{**rows[i % len(rows)], "id": f"{rows[i % len(rows)]['id']}#{i // len(rows)}"} for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    import torch

    from medvlm_trl.tiny import TINY_MAX_PIXELS, TINY_MIN_PIXELS, tiny_vlm_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model id or folder (default: the tiny offline Qwen2-VL)")
    parser.add_argument("--split", default="sample", help="dataset name or split file, as for medvlm-trl eval")
    parser.add_argument("--dataset", default=None, help="dataset that reads --split when it is a split file")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--rows", type=int, default=900, help="questions to time (rows are repeated up to this)")
    parser.add_argument("--prompt", default="r1", choices=["r1", "simple", "study"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--backend", default="auto", choices=["auto", "hf", "vllm"])
    parser.add_argument("--min-pixels", type=int, default=None, help="default: the tiny bounds for the tiny model")
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_throughput.json"))
    args = parser.parse_args(argv)

    tiny = args.model is None
    model = str(tiny_vlm_path()) if tiny else args.model
    pixels = {}
    if args.min_pixels or tiny:
        pixels["min_pixels"] = args.min_pixels or TINY_MIN_PIXELS
    if args.max_pixels or tiny:
        pixels["max_pixels"] = args.max_pixels or TINY_MAX_PIXELS
    eval_args = EvalArguments(
        model=model,
        split=args.split,
        dataset=args.dataset,
        data_dir=args.data_dir,
        prompt=args.prompt,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        backend=args.backend,
        metrics="none",
        progress=False,
        **pixels,
    )
    base = load_eval_rows(args.split, dataset=args.dataset, data_dir=args.data_dir)
    rows = repeat_rows(base, args.rows)
    backend = args.backend if args.backend != "auto" else ("vllm" if vllm_available() else "hf")
    generator = make_generator(eval_args, backend)
    settings = dict(
        prompt=args.prompt,
        batch_size=args.batch_size,
        min_pixels=eval_args.min_pixels,
        max_pixels=eval_args.max_pixels,
        progress=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        evaluate(rows[: args.batch_size], generator, Path(tmp) / "warmup", **settings)
        start = time.perf_counter()
        summary = evaluate(rows, generator, Path(tmp) / "timed", **settings)
        seconds = time.perf_counter() - start
    result = {
        "model": "tiny-qwen2-vl" if tiny else model,
        "split": args.split,
        "rows": len(rows),
        "distinct_rows": len(base),
        "prompt": args.prompt,
        "backend": backend,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "min_pixels": eval_args.min_pixels,
        "max_pixels": eval_args.max_pixels,
        "seconds": round(seconds, 2),
        "questions_per_second": round(len(rows) / seconds, 3),
        "accuracy": summary["overall"]["accuracy"],
        "device": torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
