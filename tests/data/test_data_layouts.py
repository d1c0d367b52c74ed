"""Upstream layouts written by the tests (HuatuoGPT-Vision JSON + images, PMC-VQA CSVs + images), and their checks.

The helpers here build fixture datasets in exactly the layout the real loaders read: the field names of
HuatuoGPT-Vision's `medical_multimodel_evaluation_data.json` rows (checked below against the MedVLM-R1 authors'
real test file) and the CSV header of PMC-VQA's dataset card. Images are small generated PNGs: test fixtures, not
sample data.
"""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
from helpers import AUTHORS_TEST_MANIFEST as REAL_MANIFEST
from helpers import needs_authors_manifest as needs_real_manifest
from PIL import Image

# The fields of a HuatuoGPT-Vision evaluation row; the authors' test file adds `problem` and `solution`.
HUATUO_FIELDS = ("image", "question", "options", "answer", "dataset", "subset")
SUBSETS = {"MRI": "MR (Mag-netic Resonance Imaging)", "CT": "CT(Computed Tomography)", "X-ray": "X-Ray"}
# PMC-VQA's CSV header, as its dataset card shows a train.csv row.
PMC_HEADER = ["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label"]


def make_image(key: str, size: tuple[int, int] = (40, 32)) -> Image.Image:
    """A smooth random RGB image seeded by `key`: distinct keys give distinct pictures; resizing keeps its look."""
    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
    coarse = Image.fromarray(rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8))
    return coarse.resize(size, Image.Resampling.BICUBIC)


def save_image(root: Path, name: str, key: str | None = None, image: Image.Image | None = None) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if image is not None else make_image(key or name)).save(path)
    return path


def huatuo_record(
    key: str,
    modality: str | None = "MRI",
    *,
    dataset: str = "OmniMedVQA",
    image: str | None = None,
    question: str | None = None,
    options: list[str] | None = None,
    answer_index: int = 0,
) -> dict:
    """One row of the HuatuoGPT-Vision evaluation JSON; `subset` only for OmniMedVQA rows, as upstream."""
    options = options or [f"finding {key} {k}" for k in "wxyz"]
    record = {
        "image": [image or f"images/{key}.png"],
        "question": question or f"Which finding does image {key} show?",
        "options": options,
        "answer": options[answer_index],
        "dataset": dataset,
    }
    if dataset == "OmniMedVQA":
        record["subset"] = SUBSETS.get(modality, modality)
    return record


def write_huatuo(folder: Path, records: list[dict], *, zip_images: bool = False, skip_images: tuple = ()) -> Path:
    """A local copy of the hub repository: the JSON file and `images/` (or `images.zip` holding `images/...`)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "medical_multimodel_evaluation_data.json", "w") as fh:
        json.dump(records, fh)
    names = {name for record in records for name in record["image"]} - set(skip_images)
    if zip_images:
        with zipfile.ZipFile(folder / "images.zip", "w") as archive:
            for name in sorted(names):
                path = save_image(folder / ".staging", name)
                archive.write(path, name)
    else:
        for name in names:
            if not (folder / name).exists():
                save_image(folder, name)
    return folder


def real_records() -> list[dict]:
    """The authors' 900 test rows as hub rows (without the `problem` / `solution` they added)."""
    with open(REAL_MANIFEST) as fh:
        return [{k: v for k, v in row.items() if k in HUATUO_FIELDS} for row in json.load(fh)]


def pmc_record(key: str, *, figure: str | None = None, question: str | None = None, label: str = "B") -> dict:
    """One PMC-VQA CSV row, choices with their `A:` prefixes as in the card's example."""
    texts = [f"choice {key} {k}" for k in range(4)]
    return {
        "Figure_path": figure or f"PMC{key}_F1.jpg",
        "Question": question or f"What does figure {key} show?",
        "Answer": texts["ABCD".index(label)],
        "Choice A": f"A:{texts[0]}",
        "Choice B": f" B:{texts[1]} ",
        "Choice C": f"C:{texts[2]}",
        "Choice D": f"D:{texts[3]}",
        "Answer_label": label,
    }


def write_pmc_csv(path: Path, records: list[dict], header: list[str] = PMC_HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    return path


def write_pmc_vqa(folder: Path, splits: dict[str, list[dict]], *, image_dir: str = "images", zip_images=False) -> Path:
    """A local copy of PMC-VQA version 1: `train.csv`, `test.csv`, ... and the figures (JPEG, as upstream)."""
    figures = set()
    for split, records in splits.items():
        write_pmc_csv(folder / f"{split}.csv", records)
        figures |= {r["Figure_path"] for r in records}
    if zip_images:
        with zipfile.ZipFile(folder / "images.zip", "w") as archive:
            for name in sorted(figures):
                archive.write(save_image(folder / ".staging", name), f"{image_dir}/{name}")
    else:
        for name in figures:
            save_image(folder / image_dir, name)
    return folder


@needs_real_manifest
def test_fixture_rows_have_the_fields_of_the_real_rows():
    with open(REAL_MANIFEST) as fh:
        real = json.load(fh)
    assert {k for row in real for k in row} == set(HUATUO_FIELDS) | {"problem", "solution"}
    fixture = huatuo_record("x", "MRI")
    assert set(fixture) == set(HUATUO_FIELDS)
    assert all(type(fixture[k]) is type(real[0][k]) for k in HUATUO_FIELDS)
    assert {row["subset"] for row in real} == set(SUBSETS.values())


def test_fixture_images_are_distinct_and_survive_resizing():
    from medvlm_trl.data.manifest import dhash, hamming, hash_matrix

    a, b = make_image("a"), make_image("b")
    resized = a.resize((38, 30), Image.Resampling.BICUBIC)
    d = hamming(hash_matrix([dhash(a)]), hash_matrix([dhash(b), dhash(resized)]))[0]
    assert d[0] > 40 and d[1] <= 12
