"""The embedded sample set: multiple-choice questions on real medical images that pydicom ships.

It exists so that the data-loading tests and the `tiny` profile of every recipe run offline. It is never a benchmark:
its test images are other crops and orientations of the same few slices that its training images come from.

The images are real acquisitions bundled in pydicom's test data (NEMA WG04 sample sets, vendor examples):

| source file                 | modality          | body region | notes |
|-----------------------------|-------------------|-------------|-------|
| CT_small.dcm                | CT                | Spine       | axial slice through a vertebra, 128x128 |
| J2K_pixelrep_mismatch.dcm   | CT                | Head        | axial head CT, JPEG 2000 |
| MR_small.dcm                | MRI               | (unknown)   | 64x64 MR slice; no region recorded, so no region question |
| examples_overlay.dcm        | MRI               | Abdomen     | axial abdominal MR (liver) |
| JPEG2000.dcm                | Nuclear medicine  | Whole body  | whole-body bone scintigraphy |
| examples_palette.dcm        | Ultrasound        | Pelvis      | obstetric ultrasound |
| examples_rgb_color.dcm      | Ultrasound        | Neck        | colour Doppler of a lymph node |
| examples_ybr_color.dcm      | Ultrasound        | Heart       | echocardiogram, 30 frames (4 used) |

No X-ray image ships in any package we could find, so the sample set has no X-ray row; we do not make one up.

Each image gives rows of three kinds, questions a model can answer from the pixels: the imaging modality, the
orientation it is shown in (we mirror or rotate the real image), and the body region (where the file records it).
Rows are split into train and test with a seed; no image (by pixel hash) is in both.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from medvlm_trl.cli import error_boundary
from medvlm_trl.data.images import load_image
from medvlm_trl.data.prompts import LETTERS
from medvlm_trl.data.schema import filter_rows

SAMPLE_VERSION = "1"
SAMPLE_SEED = 0
VARIANTS_PER_IMAGE = 8
TEST_FRACTION = 1 / 3


@dataclass(frozen=True)
class SourceImage:
    key: str
    file: str
    modality: str
    region: str | None
    frame: int = 0


SOURCES = [
    SourceImage("ct_spine", "CT_small.dcm", "CT", "Spine"),
    SourceImage("ct_head", "J2K_pixelrep_mismatch.dcm", "CT", "Head"),
    SourceImage("mr_slice", "MR_small.dcm", "MRI", None),
    SourceImage("mr_abdomen", "examples_overlay.dcm", "MRI", "Abdomen"),
    SourceImage("nm_whole_body", "JPEG2000.dcm", "Nuclear medicine", "Whole body"),
    SourceImage("us_obstetric", "examples_palette.dcm", "Ultrasound", "Pelvis"),
    SourceImage("us_lymph_node", "examples_rgb_color.dcm", "Ultrasound", "Neck"),
    *[SourceImage(f"us_echo_f{f}", "examples_ybr_color.dcm", "Ultrasound", "Heart", f) for f in (0, 8, 16, 24)],
]

MODALITY_OPTIONS = ["CT", "MRI", "Ultrasound", "Nuclear medicine"]
REGION_OPTIONS = ["Head", "Neck", "Heart", "Abdomen", "Pelvis", "Spine", "Whole body"]
ORIENTATIONS = {
    "original": "Original orientation",
    "mirror": "Mirrored left-right",
    "rot180": "Upside down (rotated 180 degrees)",
    "rot90": "Rotated 90 degrees",
}
QUESTIONS = {
    "modality": "Which imaging modality produced this image?",
    "orientation": "How is this image displayed?",
    "region": "Which body region does this image show?",
}


def _pydicom_file(name: str) -> Path:
    import pydicom.data

    return Path(pydicom.data.__file__).parent / "test_files" / name


def _read_source(src: SourceImage) -> Image.Image:
    if src.frame == 0:
        return load_image(_pydicom_file(src.file), row_id=src.key)
    import pydicom

    ds = pydicom.dcmread(_pydicom_file(src.file))
    return Image.fromarray(ds.pixel_array[src.frame]).convert("RGB")  # pydicom 3 returns YBR frames as RGB


def _orient(image: Image.Image, how: str) -> Image.Image:
    if how == "mirror":
        return ImageOps.mirror(image)
    if how == "rot180":
        return image.rotate(180)
    if how == "rot90":
        return image.rotate(90, expand=True)
    return image


def _crop(image: Image.Image, rng: random.Random) -> Image.Image:
    """A seeded crop keeping 85-100% of each side, so variants of one slice are distinct images."""
    w, h = image.size
    cw, ch = max(8, round(w * rng.uniform(0.85, 1.0))), max(8, round(h * rng.uniform(0.85, 1.0)))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return image.crop((x, y, x + cw, y + ch))


def _options(correct: str, pool: list[str], rng: random.Random, k: int = 4) -> tuple[list[str], str]:
    others = [o for o in pool if o != correct]
    chosen = rng.sample(others, min(k - 1, len(others))) + [correct]
    rng.shuffle(chosen)
    return chosen, LETTERS[chosen.index(correct)]


def pixel_hash(image: Image.Image) -> str:
    """Hash of the decoded RGB pixels and size: re-encoded copies of one image hash alike."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + np.asarray(rgb).tobytes()).hexdigest()


def build_sample(out_dir: str | os.PathLike, seed: int = SAMPLE_SEED) -> Path:
    """Write the sample set (PNG images, `train.jsonl`, `test.jsonl`, `README.md`) into `out_dir`."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows: list[dict] = []
    for src in SOURCES:
        base = _read_source(src)
        kinds = ["modality", "orientation"] + (["region"] if src.region else [])
        for v in range(VARIANTS_PER_IMAGE):
            how = list(ORIENTATIONS)[v % len(ORIENTATIONS)]
            image = _orient(_crop(base, rng), how)
            kind = kinds[v % len(kinds)]
            if kind == "modality":
                options, answer = _options(src.modality, MODALITY_OPTIONS, rng)
            elif kind == "orientation":
                options, answer = _options(ORIENTATIONS[how], list(ORIENTATIONS.values()), rng)
            else:
                options, answer = _options(src.region, REGION_OPTIONS, rng)
            row_id = f"sample-{src.key}-{v}"
            name = f"images/{row_id}.png"
            image.save(out / name)
            rows.append(
                {
                    "id": row_id,
                    "image": name,
                    "question": QUESTIONS[kind],
                    "options": options,
                    "answer": answer,
                    "modality": src.modality,
                    "source": "sample",
                    "question_type": kind,
                    "origin": f"pydicom test file {src.file}" + (f", frame {src.frame}" if src.frame else ""),
                    "pixel_hash": pixel_hash(image),
                }
            )
    # Stratified by modality, so every modality is in both splits in proportion.
    split_rng = random.Random(seed + 1)
    test_ids: set[str] = set()
    for modality in sorted({r["modality"] for r in rows}):
        ids = [r["id"] for r in rows if r["modality"] == modality]
        split_rng.shuffle(ids)
        test_ids.update(ids[: round(len(ids) * TEST_FRACTION)])
    for split in ("train", "test"):
        with open(out / f"{split}.jsonl", "w") as fh:
            for row in rows:
                if (row["id"] in test_ids) == (split == "test"):
                    fh.write(json.dumps(row) + "\n")
    (out / "README.md").write_text(__doc__ or "")
    return out


def sample_dir() -> Path:
    """The cached sample set, built on first use (a few seconds)."""
    from medvlm_trl.tiny import build_once, cache_dir

    return build_once(cache_dir() / f"sample-v{SAMPLE_VERSION}", build_sample, marker="test.jsonl")


def read_split(split: str, root, default_dir, set_name: str) -> list[dict]:
    """The raw rows of `{split}.jsonl` of a built set (sample or phantom) in `root`, else in `default_dir()` (built
    only after `split` is checked), `image` made an absolute path."""
    if split not in {"train", "test"}:
        raise ValueError(f"the {set_name} set has splits 'train' and 'test', not {split!r}")
    base = Path(root) if root is not None else default_dir()
    with open(base / f"{split}.jsonl") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    for row in rows:
        row["image"] = str(base / row["image"])
    return rows


def load_sample(split: str = "train", root: str | os.PathLike | None = None) -> list[dict]:
    """Contract rows of the sample set's `train` or `test` split; `image` is an absolute PNG path."""
    return list(filter_rows(read_split(split, root, sample_dir, "sample")))


@error_boundary("make-sample-data")
def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl make-sample-data OUT_DIR`: write the sample set's images, JSONL splits and card."""
    from medvlm_trl.recipe import OneLineArgumentParser

    parser = OneLineArgumentParser(prog="medvlm-trl make-sample-data", description=main.__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    args = parser.parse_args(argv)
    out = build_sample(args.out_dir, seed=args.seed)
    n = {s: len(load_sample(s, root=out)) for s in ("train", "test")}
    print(f"wrote the sample set to {out}: {n['train']} train rows, {n['test']} test rows")
    return 0
