"""Rows per second of loading a HuatuoGPT-Vision-sized index, and of preprocessing its images.

Loading is lazy (rows hold image paths; only their existence is checked), so a 17,300-row index should load in
seconds; preprocessing (`prepare_image`: decode, RGB, one resize to Qwen2-VL's grid within the study's 401,408-pixel
bound) is the per-image cost paid where images are used. The data are generated into a temporary folder in the
upstream layout (no download): small PNGs for the index, 512x512 ones (about the size of OmniMedVQA's) for
preprocessing.

    python bench/data_loading.py [--rows 17300] [--prepare-rows 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from medvlm_trl.data.huatuo import DATA_FILE, load_huatuo
from medvlm_trl.data.images import DEFAULT_MAX_PIXELS, prepare_image
from medvlm_trl.data.manifest import fingerprint


def qwen2_vl_factor() -> int:
    """The image factor of the tiny Qwen2-VL's processor (the papers' family), read from it, not assumed."""
    from transformers import AutoProcessor

    from medvlm_trl.data.images import image_factor
    from medvlm_trl.tiny import tiny_vlm_path

    return image_factor(AutoProcessor.from_pretrained(tiny_vlm_path()))


def write_index(folder: Path, rows: int, image_size: int) -> None:
    """An upstream-layout folder of `rows` OmniMedVQA-style MRI rows, one generated PNG each."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    records = []
    for i in range(rows):
        name = f"images/bench{i:05d}.png"
        pixels = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
        Image.fromarray(pixels).resize((image_size, image_size), Image.Resampling.BILINEAR).save(folder / name)
        options = [f"finding {i} {k}" for k in range(4)]
        records.append(
            {
                "image": [name],
                "question": f"What is apparent in image {i}?",
                "options": options,
                "answer": options[i % 4],
                "dataset": "OmniMedVQA",
                "subset": "MR (Mag-netic Resonance Imaging)",
            }
        )
    with open(folder / DATA_FILE, "w") as fh:
        json.dump(records, fh)


def timed(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(label: str, seconds: float, rows: int) -> None:
    print(f"{label:<42} {seconds:7.2f} s {rows / seconds:10.0f} rows/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=17_300, help="rows in the index (the real data has about 17,300)")
    parser.add_argument("--prepare-rows", type=int, default=300, help="images to preprocess")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        index, large = Path(tmp) / "index", Path(tmp) / "large"
        write_index(index, args.rows, image_size=16)
        write_index(large, args.prepare_rows, image_size=512)

        report(f"load index ({args.rows} rows, lazy)", timed(lambda: load_huatuo(index), args.repeats), args.rows)
        seconds = timed(lambda: load_huatuo(index, check_images="none"), args.repeats)
        report("load index, no existence check", seconds, args.rows)

        rows = load_huatuo(large)
        factor = qwen2_vl_factor()
        prepare_image(rows[0]["image"], factor=factor)  # the first call imports transformers' resize rule
        seconds = timed(
            lambda: [prepare_image(r["image"], max_pixels=DEFAULT_MAX_PIXELS, factor=factor) for r in rows],
            args.repeats,
        )
        report(f"prepare_image ({len(rows)} x 512x512 PNG)", seconds, len(rows))
        seconds = timed(lambda: [fingerprint(r["image"]) for r in rows], args.repeats)
        report(f"manifest hashes ({len(rows)} x 512x512 PNG)", seconds, len(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
