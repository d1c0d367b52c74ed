"""The contract's example row and the checks that keep bad rows out of training and scoring.

A bad row (answer letter not among its options, fewer than 2 or more than 6 options, no question, a missing or
unreadable image, a duplicate id) either raises `BadRowError` naming the row and the problem, or, with
`skip_bad_rows=True`, is dropped and counted per reason in a `SkipReport`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from medvlm_trl.errors import BadRowError

ROW_COLUMNS = ("image", "question", "options", "answer", "modality", "source", "id")
# The option letters of a contract row (2 to 6 options), the one definition every module reads. The accuracy reward
# (`medvlm_trl.rewards.accuracy`) deliberately reads up to 26 (A-Z): it scores any multiple-choice completion, also in
# plain TRL, not only contract rows.
LETTERS = "ABCDEF"
MIN_OPTIONS, MAX_OPTIONS = 2, len(LETTERS)


def row_images(row: dict) -> list:
    """A row's images: its `images` list, else its single `image` (the contract allows either).

    >>> row_images({"images": ["a.png", "b.png"]}), row_images({"image": "a.png"})
    (['a.png', 'b.png'], ['a.png'])
    """
    return list(row["images"]) if row.get("images") else [row.get("image")]


def num_images(row: dict) -> int:
    """How many images a row's prompt holds (one `{"type": "image"}` placeholder each)."""
    return len(row_images(row))


def normalize_text(text: str) -> str:
    """Case-folded, Unicode-normalised, whitespace-collapsed text: the form questions and options are compared in."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def check_row(row: dict) -> None:
    """Raise `BadRowError` if the row's text fields break the contract (images are checked where they are read)."""
    row_id = row.get("id")
    if row_id is None or str(row_id) == "":
        raise BadRowError(row_id, "missing_id")
    if isinstance(row_id, bool) or not isinstance(row_id, (str, int)):
        raise BadRowError(str(row_id), "missing_id", f"id is {type(row_id).__name__}, not text")
    options = row.get("options")
    if not isinstance(options, (list, tuple)) or not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
        n = len(options) if isinstance(options, (list, tuple)) else type(options).__name__
        raise BadRowError(row_id, "option_count", f"{n} options, need {MIN_OPTIONS} to {MAX_OPTIONS}")
    if any(not isinstance(o, str) or not o.strip() for o in options):
        raise BadRowError(row_id, "empty_option")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadRowError(row_id, "empty_question")
    answer = row.get("answer")
    if not isinstance(answer, str) or answer not in LETTERS[: len(options)] or len(answer) != 1:
        raise BadRowError(row_id, "answer_not_in_options", f"answer {answer!r}, letters {LETTERS[: len(options)]}")
    texts = [normalize_text(o) for o in options]
    if texts.count(texts[LETTERS.index(answer)]) > 1:
        # Another option reads the same as the correct one: choosing it is right, yet its letter scores 0.
        raise BadRowError(row_id, "ambiguous_answer", f"option {answer} {options[LETTERS.index(answer)]!r} is repeated")
    modality = row.get("modality")
    if modality is not None and not isinstance(modality, str):
        # Accuracy is reported per modality: a list or a number would become a group of its own text form.
        raise BadRowError(row_id, "bad_modality", f"modality is a {type(modality).__name__}, not text")
    images = row.get("images")
    if images is not None and not isinstance(images, (list, tuple)):
        # A single path written as `images` would otherwise be read letter by letter ("file not found: a").
        raise BadRowError(row_id, "unreadable_image", f"images is a {type(images).__name__}, not a list of images")


@dataclass
class SkipReport:
    """Rows dropped by `skip_bad_rows`, counted per reason, with the first few ids of each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, err: BadRowError) -> None:
        self.counts[err.reason] += 1
        self.examples.setdefault(err.reason, [])
        if len(self.examples[err.reason]) < 5:
            self.examples[err.reason].append(err.row_id)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        if not self.total:
            return "no rows skipped"
        parts = [f"{reason}: {n} (e.g. {self.examples[reason]})" for reason, n in sorted(self.counts.items())]
        return f"skipped {self.total} bad rows: " + "; ".join(parts)


def filter_rows(
    rows: Iterable[dict],
    skip_bad_rows: bool = False,
    report: SkipReport | None = None,
    extra_check: Callable[[dict], None] | None = None,
) -> Iterator[dict]:
    """Yield the good rows; raise on the first bad one, or skip and count it when `skip_bad_rows`."""
    seen: set[str] = set()
    report = report if report is not None else SkipReport()
    for row in rows:
        try:
            check_row(row)
            if str(row["id"]) in seen:  # 7 and "7" are one id: predictions and manifests hold ids as text
                raise BadRowError(row["id"], "duplicate_id")
            if extra_check is not None:
                extra_check(row)
        except BadRowError as err:
            if not skip_bad_rows:
                raise
            report.add(err)
            continue
        seen.add(str(row["id"]))
        yield row


# The contract's names for the three modalities both papers report; any other modality keeps its source's own name.
MRI, CT, XRAY = "MRI", "CT", "X-ray"
# Keyword rule for rows whose data does not state a modality (VQA-RAD, SLAKE, PathVQA, PMC-VQA, ...). Applied to
# one text at a time; a text naming two modalities ("Is this a CT or an MRI?") decides nothing.
MODALITY_KEYWORDS = {
    MRI: re.compile(r"\b(mri|mr|magnetic resonance|t1[- ]?weighted|t2[- ]?weighted|flair)\b", re.IGNORECASE),
    CT: re.compile(r"\b(ct|cta|computed tomography|cat scan)\b", re.IGNORECASE),
    XRAY: re.compile(r"\b(x[- ]?rays?|radiographs?|radiography|cxr)\b", re.IGNORECASE),
}


def modality_from_text(*texts: str | None) -> tuple[str, int] | None:
    """The first text that names exactly one of MRI / CT / X-ray decides: `(modality, index of that text)`.

    Paths are matched with their separators read as spaces, so `images/mri-knee_01.png` names MRI.

    >>> modality_from_text("What abnormality is seen?", "Axial CT of the chest")
    ('CT', 1)
    """
    for index, text in enumerate(texts):
        if not text:
            continue
        words = re.sub(r"[_/\\.]+", " ", text)
        found = [name for name, pattern in MODALITY_KEYWORDS.items() if pattern.search(words)]
        if len(found) == 1:
            return found[0], index
    return None


# Row ids from content (the upstream datasets carry none)


def question_hash(question: str, options: Sequence[str]) -> str:
    """SHA-256 of the normalised question and its options in order: one multiple-choice item, however it is spaced.

    The options belong to the key because a generic question ("What is apparent in this image?") recurs across
    thousands of images; the same question with the same options (and so the same answer) is the same item.
    """
    key = normalize_text(question) + "\n" + "\n".join(normalize_text(o) for o in options)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def content_id(source: str, image_file: str, question: str, options: Sequence[str]) -> str:
    """A stable row id from the row's content: `source:image file:12 hex digits of the question hash`.

    Neither upstream dataset carries ids (HuatuoGPT-Vision's evaluation code numbers rows by position), so ids are
    derived from what a row is; the same question on the same image gets the same id in every file it appears in,
    which is what lets the MedVLM-R1 test manifest be matched against the full evaluation data.
    """
    return f"{source}:{normalize_path(image_file)}:{question_hash(question, options)[:12]}"


def normalize_path(name: str) -> str:
    """An image name as a POSIX relative path without a leading `./`, the form file names are compared in."""
    text = str(name).replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return str(PurePosixPath(text))
