"""OmniMedVQA (Hu et al., CVPR 2024): multiple-choice questions over 42 medical image sources; Med-R1 trains GRPO on
its eight modalities.

The unpacked release is one folder, `OmniMedVQA/`:

    OmniMedVQA/
      QA_information/Open-access/<source>.json        one JSON list of questions per source (e.g. "Chest CT Scan.json")
      QA_information/Restricted-access/<source>.json  sources whose images must be obtained from their owners
      Images/<source>/...                              the images, named by each question's `image_path`

A question (the keys of the release; `option_C` / `option_D` only where a question has them):

    {"dataset": "ACRIMA", "question_id": "ACRIMA_0000", "question_type": "Disease Diagnosis",
     "question": "What diagnosis best fits this image?", "gt_answer": "Glaucoma",
     "image_path": "Images/ACRIMA/Im553_g_ACRIMA.png", "option_A": "Glaucoma", "option_B": "Normal",
     "modality_type": "Fundus Photography"}

Each JSON file is read by `datasets` (`load_dataset("json", data_files=one file)`: the sources' files differ in their
columns, so they are read one by one) and mapped by `medvlm_trl.data.generic` with `question` -> question,
`option_A`.. -> options, `gt_answer` (the option's text) -> answer, `image_path` (relative to the `OmniMedVQA/`
folder) -> image, `modality_type` -> modality (MR / CT / X-Ray in the contract's spelling, the other modalities as
OmniMedVQA names them; a record that spells the key `modality` is read too), `question_id` -> id and `dataset` ->
source. Rows pass the same checks, `skip_bad_rows` counts and image checks as every loader's.

`source` (a recipe's `data_dir`) is the `OmniMedVQA/` folder, a folder holding it or `OmniMedVQA.zip` (unpacked there
once), or a hub dataset id (default `foreverbeliever/OmniMedVQA`, downloaded to the hub cache, then as a folder).
`access`: `open` (Open-access sources, default), `restricted` or `all`. The data has no train/test split: its one
split is `test` (the whole data, for zero-shot evaluation); training rows come from a split file written by
`medvlm-trl make-split dataset --dataset_name omnimedvqa` (seeded, by modality if asked).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from medvlm_trl.data.generic import (
    CHECK_IMAGES,
    converted_rows,
    image_check,
    load_dataset_split,
    resolve_columns,
)
from medvlm_trl.data.hub import local_or_hub, unpack_once
from medvlm_trl.data.prompts import LETTERS
from medvlm_trl.data.schema import SkipReport, filter_rows

logger = logging.getLogger(__name__)

HUB_ID = "foreverbeliever/OmniMedVQA"
SOURCE = "OmniMedVQA"
ROOT_NAME = "OmniMedVQA"
ARCHIVE = "OmniMedVQA.zip"
QA_DIR = "QA_information"
ACCESS_DIRS = {
    "open": ("Open-access",),
    "restricted": ("Restricted-access",),
    "all": ("Open-access", "Restricted-access"),
}
OPTION_COLUMNS = tuple(f"option_{letter}" for letter in LETTERS)


def find_root(source: str | os.PathLike = HUB_ID) -> Path:
    """The `OmniMedVQA/` folder (the one holding `QA_information/`) for a folder, an archive or a hub id."""
    path = local_or_hub(source)
    if path.is_file() and path.suffix == ".zip":
        unpack_once(path, path.parent)
        path = path.parent
    for candidate in (path, path / ROOT_NAME, path / ROOT_NAME / ROOT_NAME):
        if (candidate / QA_DIR).is_dir():
            return candidate
    if unpack_once(path / ARCHIVE, path):
        return find_root(path)
    raise FileNotFoundError(
        f"{path} holds no OmniMedVQA data: no {QA_DIR}/ folder in it or in {ROOT_NAME}/, and no {ARCHIVE}"
    )


def qa_files(root: Path, access: str = "open") -> list[Path]:
    """The QA JSON files of the chosen access level, sorted by name (one per source)."""
    if access not in ACCESS_DIRS:
        raise ValueError(f"access must be one of {sorted(ACCESS_DIRS)}, not {access!r}")
    files = sorted(f for folder in ACCESS_DIRS[access] for f in (root / QA_DIR / folder).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{root / QA_DIR}: no JSON files under {' or '.join(ACCESS_DIRS[access])}/")
    return files


def _columns(file_columns: list[str], name: str) -> dict:
    """The column mapping of one QA file: its option columns, and the keys it has of id, source and modality."""
    options = [c for c in OPTION_COLUMNS if c in file_columns]
    if len(options) < 2:
        raise ValueError(f"{name} is not in OmniMedVQA's layout: no option_A / option_B columns ({file_columns})")
    mapping = {"question": "question", "options": options, "answer": "gt_answer", "image": "image_path"}
    for key, column in (("id", "question_id"), ("source", "dataset")):
        if column in file_columns:
            mapping[key] = column
    for column in ("modality_type", "modality"):
        if column in file_columns:
            mapping["modality"] = column
            break
    return mapping


def _records(ds) -> Iterator[dict]:
    for record in ds:
        if record.get("modality_type") is None and record.get("modality") is not None:
            record = {**record, "modality_type": record["modality"]}  # a record that spells the key `modality`
        yield record


def load_omnimedvqa(
    source: str | os.PathLike = HUB_ID,
    split: str = "test",
    *,
    access: str = "open",
    image_root: str | os.PathLike | None = None,
    check_images: str = "exists",
    skip_bad_rows: bool = False,
    report: SkipReport | None = None,
) -> list[dict]:
    """Contract rows of OmniMedVQA's QA files; see the module docstring."""
    if split != "test":
        raise ValueError(
            "OmniMedVQA has one split, 'test' (the whole data); for a training split pass split_file= a manifest "
            "written by `medvlm-trl make-split dataset --dataset_name omnimedvqa`"
        )
    if check_images not in CHECK_IMAGES:
        raise ValueError(f"check_images must be one of {CHECK_IMAGES}, not {check_images!r}")
    root = find_root(source)
    images = Path(image_root).expanduser().resolve() if image_root is not None else root.resolve()
    report = report if report is not None else SkipReport()

    def all_rows() -> Iterator[dict]:
        start = 0
        for path in qa_files(root, access):
            ds = load_dataset_split("json", "train", data_files=str(path))
            mapping = _columns(ds.column_names, path.name)
            try:
                cmap = resolve_columns(mapping, ds.column_names, key=f"{path.name}: OmniMedVQA columns")
            except ValueError as err:
                raise ValueError(f"{path.name} is not in OmniMedVQA's layout: {err}") from None
            yield from converted_rows(_records(ds), cmap, images, SOURCE, skip_bad_rows, report, start=start)
            start += len(ds)

    extra = None if check_images == "none" else image_check(check_images)
    rows = list(filter_rows(all_rows(), skip_bad_rows, report, extra))
    if report.total:
        logger.warning("OmniMedVQA: %s", report)
    return rows
