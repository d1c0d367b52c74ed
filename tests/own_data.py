"""Small datasets in the layouts a user brings (a CSV beside an image folder, a JSONL with images as bytes, an
OmniMedVQA folder), written on the spot for the tests and the README tutorial test."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

MODALITIES = ("CT", "MRI", "X-ray")
ORGANS = ("Liver", "Brain", "Lung", "Heart")


def image(seed: int, size: int = 48) -> Image.Image:
    """A distinct noise image per seed (no two are near-duplicates, so the leakage audit keeps them apart)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8"))


def png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    image(seed).save(buffer, format="PNG")
    return buffer.getvalue()


def question_rows(n: int = 12) -> list[dict]:
    """`n` questions: four organ options (every third row has three), answers alternating as letter and text,
    modalities cycling CT / MRI / X-ray."""
    rows = []
    for i in range(n):
        options = list(ORGANS[:3] if i % 3 == 0 else ORGANS)
        correct = i % len(options)
        rows.append(
            {
                "qid": f"q{i:02d}",
                "question": f"Which organ does image {i} show?",
                "options": options,
                "answer": "ABCD"[correct] if i % 2 else options[correct],
                "modality": MODALITIES[i % 3],
            }
        )
    return rows


def write_csv_dataset(folder: Path, n: int = 12, edit=None) -> Path:
    """`folder/images/*.png` and `folder/questions.csv` (columns qid, image, question, A-D, answer, modality);
    `edit(rows)` may spoil rows first. Returns the CSV's path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i, row in enumerate(question_rows(n)):
        name = f"images/scan_{i:02d}.png"
        image(i).save(folder / name)
        options = row["options"] + [""] * (4 - len(row["options"]))
        records.append(
            {
                "qid": row["qid"],
                "image": name,
                "question": row["question"],
                **dict(zip("ABCD", options)),
                "answer": row["answer"],
                "modality": row["modality"],
            }
        )
    if edit is not None:
        edit(records)
    path = folder / "questions.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return path


def write_jsonl_bytes_dataset(path: Path, n: int = 12, edit=None) -> Path:
    """A JSONL file whose images are PNG bytes (as base64 data URIs: JSON holds no raw bytes), options as a list,
    the answer as the option's text, the modality under `kind` and no id column."""
    records = []
    for i, row in enumerate(question_rows(n)):
        answer = row["answer"] if len(row["answer"]) > 1 else row["options"]["ABCD".index(row["answer"])]
        uri = "data:image/png;base64," + base64.b64encode(png_bytes(100 + i)).decode()
        records.append(
            {
                "picture": uri,
                "text": row["question"],
                "choices": row["options"],
                "truth": answer,
                "kind": row["modality"],
            }
        )
    if edit is not None:
        edit(records)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


JSONL_COLUMNS = {"question": "text", "options": "choices", "answer": "truth", "image": "picture", "modality": "kind"}

# OmniMedVQA's own modality names (`modality_type`), as its QA files spell them.
OMNI_MODALITIES = {
    "Chest CT Scan": "CT(Computed Tomography)",
    "BraTS": "MR (Mag-netic Resonance Imaging)",
    "ACRIMA": "Fundus Photography",
}


def write_omnimedvqa(folder: Path, per_source: int = 4) -> Path:
    """An `OmniMedVQA/` folder in the release's layout: QA_information/Open-access/<source>.json and
    Images/<source>/...; the fundus source has two-option questions (no option_C / option_D keys) and one chest CT
    record spells its modality key `modality`, as the release does. Returns the `OmniMedVQA/` folder."""
    root = Path(folder) / "OmniMedVQA"
    qa = root / "QA_information" / "Open-access"
    qa.mkdir(parents=True, exist_ok=True)
    (root / "QA_information" / "Restricted-access").mkdir(parents=True, exist_ok=True)
    seed = 500
    for source, modality in OMNI_MODALITIES.items():
        (root / "Images" / source).mkdir(parents=True, exist_ok=True)
        records = []
        for i in range(per_source):
            seed += 1
            rel = f"Images/{source}/{source.replace(' ', '_')}_{i}.png"
            image(seed).save(root / rel)
            if source == "ACRIMA":
                options = {"option_A": "Glaucoma", "option_B": "Normal"}
            else:
                options = {f"option_{k}": v for k, v in zip("ABCD", ORGANS)}
            gt = list(options.values())[i % len(options)]
            record = {
                "dataset": source,
                "question_id": f"{source.replace(' ', '_')}_{i:04d}",
                "question_type": "Disease Diagnosis",
                "question": f"What does this {source} image show? ({i})",
                "gt_answer": gt,
                "image_path": rel,
                **options,
                "modality_type": modality,
            }
            if source == "Chest CT Scan" and i == 0:
                record["modality"] = record.pop("modality_type")
            records.append(record)
        (qa / f"{source}.json").write_text(json.dumps(records, indent=1))
    return root
