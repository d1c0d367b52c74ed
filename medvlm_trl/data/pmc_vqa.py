"""PMC-VQA, the RL-MedVQA study's data (its experiments: a 10K training subset, a 7K test subset).

The seeded subsets are drawn, and written as split manifests, by `medvlm_trl.data.splits.pmc_vqa_subsets`
(`medvlm-trl make-split pmc-vqa`); this module loads whole CSVs.

The hub dataset `xmcmic/PMC-VQA` holds, per its card, two versions:

- version 1: `train.csv`, `test.csv`, `test_clean.csv` (the manually checked test subset) and `images.zip`;
- version 2 (compound figures split into panels): `train_2.csv`, `test_2.csv` and `images_2.zip`.

A CSV row (the card's example):

    Figure_path   PMC1064097_F1.jpg
    Question      What is the uptake pattern in the breast?
    Answer        Focal uptake pattern
    Choice A      A:Diffuse uptake pattern
    Choice B      B:Focal uptake pattern
    Choice C      C:No uptake pattern
    Choice D      D:Cannot determine from the information given
    Answer_label  B

Choices carry their letter as an `A:` prefix (sometimes with spaces around it); it is stripped, so options are the
bare texts that the `study` prompt renders back as `A:...` items (the study's rendering) and `r1` / `simple` as
`A) ...` lines. Older copies spell the columns `Anwser` / `Anwser_label`; both spellings
are read. Where `Answer_label` is absent and `Answer` is a single letter, that letter is the answer. Where both an
answer text and a label are present and the text is a *different* option than the label names, the row is bad
(`answer_mismatch`). Trailing empty choices are dropped (a three-option row); an empty choice before a filled one is
a bad row, and so is a line with non-empty values beyond the header's columns (`malformed_row`: an unquoted comma
has shifted its fields; a line that merely ends with a comma is read).

PMC-VQA rows carry no modality; it is derived by the keyword rule of `medvlm_trl.data.schema.modality_from_text`
(question, then the answer text, then the figure name), else "Other". Ids are content ids
(`PMC-VQA:figure:question hash`), so `test_clean` rows have the ids of the same questions in `test`. Images stay
lazy: rows hold paths, checked for existence at load time and decoded where they are used.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from medvlm_trl.data.hub import CHECK_IMAGES, extract_images, image_check
from medvlm_trl.data.hub import local_or_hub as resolve_folder
from medvlm_trl.data.prompts import LETTERS
from medvlm_trl.data.schema import (
    BadRowError,
    SkipReport,
    content_id,
    filter_rows,
    modality_from_text,
    normalize_path,
    normalize_text,
)

logger = logging.getLogger(__name__)

HUB_ID = "xmcmic/PMC-VQA"
SOURCE = "PMC-VQA"
CSV_FILES = {
    1: {"train": "train.csv", "test": "test.csv", "test_clean": "test_clean.csv"},
    2: {"train": "train_2.csv", "test": "test_2.csv"},
}
IMAGE_ZIPS = {1: "images.zip", 2: "images_2.zip"}
# Where the unpacked figures have been seen to land; the first folder holding a row's figure wins.
IMAGE_DIRS = ("images", "images_2", "figures", "images/images", "images_2/figures", ".")
# The RL-MedVQA study's subset sizes.
STUDY_TRAIN_SIZE = 10_000
STUDY_TEST_SIZE = 7_000
DEFAULT_MODALITY = "Other"
_ALIASES = {"anwser": "answer", "anwser_label": "answer_label"}


def _column(name: str) -> str:
    key = name.strip().lower().replace(" ", "_")
    return _ALIASES.get(key, key)


def parse_choice(text: str | None, letter: str) -> str:
    """`" B:Focal uptake pattern "` -> `"Focal uptake pattern"`; only the choice's own letter is stripped.

    >>> parse_choice("A:Diffuse uptake pattern", "A"), parse_choice("B : 5 mm", "B"), parse_choice("A:B ratio", "B")
    ('Diffuse uptake pattern', '5 mm', 'A:B ratio')
    """
    text = (text or "").strip()
    return re.sub(rf"^{letter}\s*:\s*", "", text, count=1).strip()


def _answer_letter(record: dict, options: list[str], row_id: str) -> str:
    label = (record.get("answer_label") or "").strip()
    answer = (record.get("answer") or "").strip()
    if not label and len(answer) == 1 and answer in LETTERS:
        return answer  # version-2 style: the Answer column is the letter itself
    texts = [normalize_text(o) for o in options]
    answer_text = normalize_text(parse_choice(answer, label)) if answer else ""
    if not label:
        if answer_text in texts and texts.count(answer_text) == 1:
            return LETTERS[texts.index(answer_text)]
        raise BadRowError(row_id, "answer_not_in_options", f"answer {answer!r}, no answer label")
    if answer_text and label in LETTERS[: len(options)] and answer_text != texts[LETTERS.index(label)]:
        if answer_text in texts:
            raise BadRowError(row_id, "answer_mismatch", f"label {label} but answer text {answer!r}")
    return label


def row_from_record(record: dict, line: int, image_dir: Path | None, extra_values: int = 0) -> dict:
    """One CSV record (columns already normalised by `_column`) as a contract row, or `BadRowError`. `extra_values`:
    how many values its line has beyond the header (most often an unquoted comma: the fields after it have shifted)."""
    figure = normalize_path((record.get("figure_path") or "").strip())
    question = (record.get("question") or "").strip()
    choices = []
    for letter in LETTERS:
        key = f"choice_{letter.lower()}"
        if key not in record:
            break
        choices.append(parse_choice(record.get(key), letter))
    while choices and not choices[-1]:
        choices.pop()
    row_id = content_id(SOURCE, figure, question, choices) if figure else f"line {line}"
    if not figure:
        raise BadRowError(row_id, "missing_image", "empty Figure_path")
    if extra_values:
        raise BadRowError(row_id, "malformed_row", f"line {line} has {extra_values} value(s) beyond the header")
    answer = _answer_letter(record, choices, row_id)
    answer_text = choices[LETTERS.index(answer)] if answer in LETTERS[: len(choices)] else None
    derived = modality_from_text(question, answer_text, figure)
    return {
        "id": row_id,
        "image": str(image_dir / figure) if image_dir is not None else figure,
        "image_file": figure,
        "question": question,
        "options": choices,
        "answer": answer,
        "modality": derived[0] if derived else DEFAULT_MODALITY,
        "source": SOURCE,
    }


def _records(csv_path: Path) -> Iterator[tuple[int, dict, int]]:
    """(line number, record, how many non-empty values the line has beyond the header) for each CSV line."""
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{csv_path} is empty")
            names = [_column(n) for n in header]  # a pandas index column has an empty name and is ignored
            missing = {"figure_path", "question", "choice_a", "choice_b"} - set(names)
            if missing:
                raise ValueError(f"{csv_path}: no column(s) {sorted(missing)}; columns are {header}")
            for line, values in enumerate(reader, start=2):  # line 1 is the header
                record = {name: value for name, value in zip(names, values) if name}
                # Values beyond the header; empty ones (a line that merely ends with a comma) shift nothing.
                yield line, record, sum(1 for value in values[len(names) :] if value.strip())
        except (UnicodeDecodeError, csv.Error) as err:  # not UTF-8 text, or a field beyond the csv module's limit
            raise ValueError(f"{csv_path}: unreadable as a UTF-8 CSV near line {reader.line_num + 1} ({err})") from None


def find_image_dir(folder: Path, figures: list[str]) -> Path:
    """The folder under `folder` holding the first of `figures` found (unpacked archives nest differently).

    `folder/images` if none is found; the rows' images are then reported missing by the load-time check.
    """
    for figure in figures:
        for candidate in IMAGE_DIRS:
            if (folder / candidate / figure).is_file():
                return (folder / candidate).resolve()
    return folder / "images"


def load_pmc_vqa(
    source: str | os.PathLike = HUB_ID,
    split: str = "train",
    *,
    version: int = 1,
    image_root: str | os.PathLike | None = None,
    skip_bad_rows: bool = False,
    report: SkipReport | None = None,
    check_images: str = "exists",
) -> list[dict]:
    """Contract rows of one PMC-VQA CSV: `split` is `train`, `test` or (version 1) `test_clean`.

    `source` is the hub id (only the chosen version's files are downloaded), a local copy of the repository (its
    images zip is unpacked once), or a CSV file. Bad rows raise `BadRowError`, or with `skip_bad_rows` are dropped
    and counted in `report`.
    """
    if version not in CSV_FILES:
        raise ValueError(f"PMC-VQA has versions {sorted(CSV_FILES)}, not {version!r}")
    if split not in CSV_FILES[version]:
        raise ValueError(f"PMC-VQA version {version} has splits {sorted(CSV_FILES[version])}, not {split!r}")
    if check_images not in CHECK_IMAGES:
        raise ValueError(f"check_images must be one of {CHECK_IMAGES}, not {check_images!r}")
    patterns = [*CSV_FILES[version].values(), IMAGE_ZIPS[version], "README.md"]
    path = resolve_folder(source, allow_patterns=patterns)
    if path.is_file():
        csv_path, folder = path, path.parent
    else:
        csv_path, folder = path / CSV_FILES[version][split], path
        if not csv_path.is_file():
            raise FileNotFoundError(f"{path} has no {csv_path.name} (PMC-VQA version {version}, split {split!r})")
        extract_images(folder, IMAGE_ZIPS[version], IMAGE_DIRS[:3])
    report = report if report is not None else SkipReport()
    records = list(_records(csv_path))
    image_dir = Path(image_root) if image_root is not None else None
    if image_dir is None:
        # A few rows suffice to find the folder; one missing figure must not hide it.
        figures = [
            normalize_path(r.get("figure_path") or "")
            for _, r, _ in records[:50]
            if (r.get("figure_path") or "").strip()
        ]
        image_dir = find_image_dir(folder, figures)

    def converted() -> Iterator[dict]:
        for line, record, extra_values in records:
            try:
                yield row_from_record(record, line, image_dir, extra_values)
            except BadRowError as err:
                if not skip_bad_rows:
                    raise
                report.add(err)

    extra = None if check_images == "none" else image_check(check_images)
    rows = list(filter_rows(converted(), skip_bad_rows, report, extra))
    if report.total:
        logger.warning("%s: %s", csv_path.name, report)
    return rows
