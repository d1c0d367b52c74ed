"""HuatuoGPT-Vision's medical multimodal evaluation data, the pool MedVLM-R1 draws its questions from.

The hub dataset `FreedomIntelligence/Medical_Multimodal_Evaluation_Data` holds one JSON file,
`medical_multimodel_evaluation_data.json` (the spelling is the dataset's), and `images.zip`, which unpacks into
`images/`. The JSON is a list of about 17,300 multiple-choice questions pooled from VQA-RAD, SLAKE, PathVQA,
OmniMedVQA and PMC-VQA, each a dict:

    {"image": ["images/brain002206.png"], "question": "What is apparent in this image?",
     "options": ["Hemorrhage", "Acute infarct", "Abscess formation", "Chronic infarct"],
     "answer": "Chronic infarct", "dataset": "OmniMedVQA", "subset": "MR (Mag-netic Resonance Imaging)"}

`answer` is the correct option's text; `subset` is present for OmniMedVQA rows. The MedVLM-R1 authors' test file
(MRI_CT_XRAY_300each_dataset.json) has the same rows plus `problem` (question and `A) ...` option lines) and
`solution` (the letter); it loads here too.

Modality (MedVLM-R1 section 4 trains on MRI and tests on MRI, CT and X-ray): taken from the data where it says it,
i.e. OmniMedVQA's `subset` ("MR (Mag-netic Resonance Imaging)" -> MRI, "CT(Computed Tomography)" -> CT, "X-Ray" ->
X-ray, any other subset keeps its own name). Otherwise it is derived by a keyword rule
(`medvlm_trl.data.schema.modality_from_text`): the first of the question text, the correct option's text and the
image path that names exactly one of MRI / CT / X-ray decides; PathVQA rows with no such mention are "Pathology";
the rest are "Other". Each row records which rule set its modality in `modality_from`
("subset", "question", "answer", "image_path" or "default").

Images stay lazy: a row's `image` is a path, checked for existence at load time; it is decoded (and an unreadable
file reported, naming the row, as `ImageLoadError`) where it is used, by `medvlm_trl.data.images.prepare_image`.
Pass `check_images="decode"` to decode every image at load time instead, or `"none"` to skip the check (the
authors' test file, whose images are not published).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from medvlm_trl.data.hub import CHECK_IMAGES, extract_images, image_check
from medvlm_trl.data.hub import local_or_hub as resolve_folder
from medvlm_trl.data.prompts import LETTERS
from medvlm_trl.data.schema import (
    CT,
    MRI,
    XRAY,
    BadRowError,
    SkipReport,
    content_id,
    filter_rows,
    modality_from_text,
    normalize_path,
)

logger = logging.getLogger(__name__)

HUB_ID = "FreedomIntelligence/Medical_Multimodal_Evaluation_Data"
DATA_FILE = "medical_multimodel_evaluation_data.json"
IMAGES_ZIP = "images.zip"
# Sources whose rows name no modality keyword but are one modality by construction.
SOURCE_MODALITY = {"PathVQA": "Pathology"}
DEFAULT_MODALITY = "Other"
_TEXT_RULES = ("question", "answer", "image_path")


def subset_modality(subset: str | None) -> str | None:
    """OmniMedVQA's `subset` as a contract modality: MRI / CT / X-ray, or the subset's own name for the others.

    >>> subset_modality("MR (Mag-netic Resonance Imaging)"), subset_modality("CT(Computed Tomography)")
    ('MRI', 'CT')
    """
    if not subset or not str(subset).strip():
        return None
    letters = re.sub(r"[^a-z]", "", str(subset).lower())  # the data's own "Mag-netic" typo reads as "magnetic"
    if letters.startswith(("mri", "mr")) or "magneticresonance" in letters:
        return MRI
    if letters.startswith("ct") or "computedtomography" in letters:
        return CT
    if letters.startswith("xray"):
        return XRAY
    return str(subset).strip()


def row_modality(record: dict, answer_text: str | None, image_file: str) -> tuple[str, str]:
    """`(modality, which rule set it)` for one upstream record; see the module docstring for the rule."""
    stated = subset_modality(record.get("subset"))
    if stated is not None:
        return stated, "subset"
    derived = modality_from_text(record.get("question"), answer_text, image_file)
    if derived is not None:
        return derived[0], _TEXT_RULES[derived[1]]
    return SOURCE_MODALITY.get(str(record.get("dataset", "")), DEFAULT_MODALITY), "default"


def _options(record: dict, row_id: str) -> list[str]:
    options = record.get("options")
    # Some exports store the list as its Python repr; HuatuoGPT-Vision's own eval.py parses it the same way.
    if isinstance(options, str):
        try:
            options = ast.literal_eval(options)
        except (ValueError, SyntaxError):
            raise BadRowError(row_id, "option_count", "options is an unparseable string") from None
    if not isinstance(options, (list, tuple)):
        raise BadRowError(row_id, "option_count", f"options is {type(options).__name__}")
    for i, option in enumerate(options):  # numbers read as their text; null or a nested list is no option text
        if option is None or isinstance(option, (bool, list, tuple, dict)):
            raise BadRowError(row_id, "empty_option", f"option {i} is {option!r}")
    return [str(o).strip() for o in options]


def row_from_record(record: dict, index: int, image_root: str | os.PathLike | None = None) -> dict:
    """One upstream record as a contract row, or `BadRowError` naming it (by position until it has an id).

    `answer` becomes the correct option's letter; where the record also carries a `solution` letter (the authors'
    test file), the two must agree.
    """
    where = f"#{index}"
    if not isinstance(record, dict):
        raise BadRowError(where, "not_a_record", type(record).__name__)
    images = record.get("image")
    if images is not None and not isinstance(images, (str, list, tuple)):
        raise BadRowError(where, "missing_image", f"image is {type(images).__name__}, not a file name or a list")
    images = [images] if isinstance(images, str) else list(images or [])
    if not images:
        raise BadRowError(where, "missing_image", "the row names no image")
    if len(images) > 1:
        raise BadRowError(where, "multi_image", f"{len(images)} images")
    if not isinstance(images[0], str) or not images[0].strip():
        raise BadRowError(where, "missing_image", f"image {images[0]!r} is not a file name")
    image_file = normalize_path(images[0])
    question = record.get("question")
    if question is not None and not isinstance(question, str):
        raise BadRowError(where, "empty_question", f"question is {type(question).__name__}, not text")
    question = (question or "").strip()
    options = _options(record, where)
    source = str(record.get("dataset") or "HuatuoGPT-Vision").strip()
    row_id = content_id(source, image_file, question, options)
    answer_text = record.get("answer")
    answer_text = str(answer_text).strip() if answer_text is not None else None
    if answer_text is None or options.count(answer_text) != 1:
        reason = "answer_not_in_options" if answer_text not in options else "ambiguous_answer"
        raise BadRowError(row_id, reason, f"answer {answer_text!r}, options {options}")
    letter = LETTERS[options.index(answer_text)] if options.index(answer_text) < len(LETTERS) else None
    solution = record.get("solution")
    if solution is not None and str(solution).strip() != letter:
        raise BadRowError(row_id, "answer_mismatch", f"solution {solution!r} but answer {answer_text!r} is {letter}")
    modality, modality_from = row_modality(record, answer_text, image_file)
    image = str(Path(image_root) / image_file) if image_root is not None else image_file
    return {
        "id": row_id,
        "image": image,
        "image_file": image_file,
        "question": question,
        "options": options,
        "answer": letter,
        "modality": modality,
        "modality_from": modality_from,
        "source": source,
    }


def locate(source: str | os.PathLike = HUB_ID) -> tuple[Path, Path]:
    """`(JSON file, image root)` for a hub id, a downloaded folder or a JSON file (images beside it)."""
    path = resolve_folder(source)
    if path.is_file():
        return path, path.parent
    data_file = path / DATA_FILE
    if not data_file.is_file():
        found = sorted(p.name for p in path.glob("*.json"))
        raise FileNotFoundError(f"{path} has no {DATA_FILE} (JSON files there: {found or 'none'})")
    extract_images(path, IMAGES_ZIP, ("images",))
    return data_file, path


def _converted(records: list, image_root: Path | None, skip_bad_rows: bool, report: SkipReport) -> Iterator[dict]:
    for index, record in enumerate(records):
        try:
            yield row_from_record(record, index, image_root)
        except BadRowError as err:
            # Several images per question (a few pooled sources) do not fit the one-image pipeline of both papers:
            # always left out, always counted, never an error.
            if err.reason == "multi_image" or skip_bad_rows:
                report.add(err)
                continue
            raise


def load_huatuo(
    source: str | os.PathLike = HUB_ID,
    *,
    image_root: str | os.PathLike | None = None,
    skip_bad_rows: bool = False,
    report: SkipReport | None = None,
    check_images: str = "exists",
) -> list[dict]:
    """Contract rows of the HuatuoGPT-Vision evaluation data (or the MedVLM-R1 test file, which has its schema).

    `source` is the hub id (downloaded once to the hub cache), a local copy of the repository (with `images/` or
    `images.zip`, unpacked once) or a JSON file whose images lie under `image_root` (default: beside it). Bad rows
    raise `BadRowError`, or with `skip_bad_rows` are dropped and counted in `report`; see `medvlm_trl.data.schema`.
    """
    if check_images not in CHECK_IMAGES:
        raise ValueError(f"check_images must be one of {CHECK_IMAGES}, not {check_images!r}")
    data_file, default_root = locate(source)
    root = Path(image_root) if image_root is not None else default_root
    try:
        with open(data_file, encoding="utf-8") as fh:
            records = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{data_file} is not valid JSON ({err})") from None
    if not isinstance(records, list):
        raise ValueError(f"{data_file}: expected a JSON list of rows, got {type(records).__name__}")
    report = report if report is not None else SkipReport()
    extra = None if check_images == "none" else image_check(check_images)
    rows = list(filter_rows(_converted(records, root, skip_bad_rows, report), skip_bad_rows, report, extra))
    if report.total:
        logger.warning("%s: %s", data_file.name, report)
    return rows


def summarize(rows: list[dict]) -> Counter:
    """Rows counted per `(source, modality)`."""
    return Counter((row["source"], row["modality"]) for row in rows)


def format_summary(rows: list[dict]) -> str:
    """The per-source, per-modality counts as a small text table, with totals."""
    counts = summarize(rows)
    sources = sorted({s for s, _ in counts})
    modalities = sorted({m for _, m in counts})
    width = max([len("source")] + [len(s) for s in sources])
    lines = [f"{'source':<{width}}  " + "  ".join(f"{m:>10}" for m in modalities) + f"  {'total':>7}"]
    for s in sources:
        cells = "  ".join(f"{counts.get((s, m), 0):>10}" for m in modalities)
        lines.append(f"{s:<{width}}  {cells}  {sum(counts.get((s, m), 0) for m in modalities):>7}")
    totals = "  ".join(f"{sum(counts.get((s, m), 0) for s in sources):>10}" for m in modalities)
    lines.append(f"{'total':<{width}}  {totals}  {len(rows):>7}")
    return "\n".join(lines)
