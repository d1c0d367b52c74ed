"""Leakage audit: does any test item appear in the training split, under any name?

MedVLM-R1 trains on 600 HuatuoGPT-Vision MRI questions and tests on 300 MRI, 300 CT and 300 X-ray questions drawn
from the same pool (section 4), so an image or question shared by both splits would inflate the in-domain MRI
result. The audit compares a training manifest with one or more test manifests by five criteria:

| criterion    | a pair overlaps when                                                        | kind  |
|--------------|-----------------------------------------------------------------------------|-------|
| `id`         | both rows have the same id                                                  | exact |
| `image_file` | both name the same image file (relative path as the source writes it)       | exact |
| `pixel`      | both images decode to the same RGB pixels (re-saved or renamed copies)      | exact |
| `question`   | same normalised question and options: the same item, so the same answer     | exact |
| `near_image` | perceptual hashes within `near_threshold` bits of 256 (resized or re-encoded copies) | near |

`medvlm-trl audit-split TRAIN TEST [TEST ...]` prints counts per criterion and per modality and the offending
pairs, and exits 1 on any exact overlap (and on near ones with `--fail-on-near`). Rows without image hashes (the
authors' test file: its images are not published) cannot be checked by `pixel` or `near_image`; the audit says how
many, and exits 3 unless `--allow-incomplete`, rather than passing silently. `--image-root` hashes them from a local
copy of the images first.

Training commands call `assert_no_leakage` before their first step.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medvlm_trl.cli import error_boundary
from medvlm_trl.data.manifest import (
    SplitManifest,
    as_manifest,
    fill_hashes,
    hamming,
    hash_matrix,
    manifest_from_rows,
)
from medvlm_trl.errors import LeakageError, RecipeError, wrapped_errors
from medvlm_trl.recipe import OneLineArgumentParser

logger = logging.getLogger(__name__)

EXACT_CRITERIA = ("id", "image_file", "pixel", "question")
NEAR_CRITERIA = ("near_image",)
CRITERIA = EXACT_CRITERIA + NEAR_CRITERIA
# Bits of 256 within which two images count as near-duplicates. Measured on the sample set's real CT/MR/US images:
# copies resized by 0.5x to 1.5x move 2 bits in the median and 11 at most, JPEG re-encoding 11 at most; distinct
# images are 13 or more apart (crops of one slice, neighbouring echo frames) and typically about 120.
NEAR_THRESHOLD = 12
EXIT_OVERLAP, EXIT_INCOMPLETE = 1, 3
_CHUNK = 64  # training images per block of the distance matrix, to bound memory (64 x n_test x 32 bytes)


@dataclass(frozen=True)
class Overlap:
    """One offending (training row, test row) pair under one criterion."""

    criterion: str
    train_id: str
    test_id: str
    test_manifest: str
    modality: str  # the test row's: the result the leak would inflate
    detail: str = ""


@dataclass
class AuditReport:
    train_label: str
    test_labels: list[str]
    criteria: tuple[str, ...]
    near_threshold: int
    overlaps: list[Overlap] = field(default_factory=list)
    # Per manifest label, rows that have no image hashes, so `pixel` and `near_image` could not look at them.
    unhashed: dict[str, int] = field(default_factory=dict)

    def counts(self) -> Counter:
        return Counter(o.criterion for o in self.overlaps)

    def counts_by_modality(self) -> dict[str, Counter]:
        by = defaultdict(Counter)
        for o in self.overlaps:
            by[o.criterion][o.modality] += 1
        return dict(by)

    @property
    def exact(self) -> list[Overlap]:
        return [o for o in self.overlaps if o.criterion in EXACT_CRITERIA]

    @property
    def near(self) -> list[Overlap]:
        return [o for o in self.overlaps if o.criterion in NEAR_CRITERIA]

    @property
    def complete(self) -> bool:
        """Whether every criterion asked for could look at every row."""
        image_checks = {"pixel", "near_image"} & set(self.criteria)
        return not (image_checks and any(self.unhashed.values()))

    def summary(self, max_pairs: int = 20) -> str:
        lines = [f"audit of {self.train_label} against {', '.join(self.test_labels)}"]
        counts, by_modality = self.counts(), self.counts_by_modality()
        for criterion in self.criteria:
            kind = "exact" if criterion in EXACT_CRITERIA else f"near, <= {self.near_threshold} bits"
            per = ", ".join(f"{m}: {n}" for m, n in sorted(by_modality.get(criterion, {}).items()))
            lines.append(f"  {criterion:<11} ({kind}): {counts.get(criterion, 0)} pairs" + (f" ({per})" if per else ""))
        for label, n in self.unhashed.items():
            if n and not self.complete:
                lines.append(
                    f"  NOT CHECKED: {n} rows of {label} have no image hashes (images absent), so pixel and "
                    "near-duplicate overlaps with them could not be looked for"
                )
        if self.overlaps:
            lines.append(f"  offending pairs (first {min(max_pairs, len(self.overlaps))} of {len(self.overlaps)}):")
            for o in self.overlaps[:max_pairs]:
                extra = f" [{o.detail}]" if o.detail else ""
                lines.append(f"    {o.criterion}: train {o.train_id} ~ test {o.test_id} ({o.test_manifest}){extra}")
        else:
            lines.append("  no overlaps found")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "train": self.train_label,
            "tests": self.test_labels,
            "criteria": list(self.criteria),
            "near_threshold": self.near_threshold,
            "counts": dict(self.counts()),
            "counts_by_modality": {c: dict(m) for c, m in self.counts_by_modality().items()},
            "unhashed": self.unhashed,
            "complete": self.complete,
            "overlaps": [o.__dict__ for o in self.overlaps],
        }


def _index(rows: list[dict], key) -> dict[str, list[dict]]:
    index = defaultdict(list)
    for row in rows:
        for value in key(row):
            index[value].append(row)
    return index


_KEYS = {
    "id": lambda row: [row["id"]],
    "image_file": lambda row: row.get("images") or [],
    "pixel": lambda row: row.get("pixel_sha256") or [],
    "question": lambda row: [row["question_sha256"]],
}


def _near_pairs(train_rows: list[dict], test_rows: list[dict], threshold: int):
    """`(train row, test row, distance)` for every image pair within `threshold` bits."""
    pairs_a = [(r, h) for r in train_rows for h in r.get("dhash") or [] if h]
    pairs_b = [(r, h) for r in test_rows for h in r.get("dhash") or [] if h]
    if not pairs_a or not pairs_b:
        return
    owners_a, owners_b = [r for r, _ in pairs_a], [r for r, _ in pairs_b]
    a, b = hash_matrix([h for _, h in pairs_a]), hash_matrix([h for _, h in pairs_b])
    for start in range(0, len(a), _CHUNK):
        distances = hamming(a[start : start + _CHUNK], b)
        for i, j in zip(*np.nonzero(distances <= threshold)):
            yield owners_a[start + i], owners_b[j], int(distances[i, j])


def check_criteria(criteria: Sequence[str]) -> tuple[str, ...]:
    """The criteria as a tuple, or `ValueError` naming any that do not exist."""
    unknown = set(criteria) - set(CRITERIA)
    if unknown:
        raise ValueError(f"unknown audit criteria {sorted(unknown)}; choose from {list(CRITERIA)}")
    return tuple(criteria)


def audit(
    train: SplitManifest | str | os.PathLike,
    tests: Sequence[SplitManifest | str | os.PathLike],
    *,
    criteria: Sequence[str] = CRITERIA,
    near_threshold: int = NEAR_THRESHOLD,
) -> AuditReport:
    """Every overlapping (train, test) pair by each criterion; a pair that shares pixels is not also listed as near."""
    criteria = check_criteria(criteria)
    train = as_manifest(train)
    tests = [as_manifest(t) for t in tests]
    report = AuditReport(train.label, [t.label for t in tests], criteria, near_threshold)
    report.unhashed = {m.label: m.unhashed() for m in [train, *tests]}
    seen: set[tuple] = set()

    def add(criterion: str, tr: dict, te: dict, label: str, detail: str = "") -> None:
        if (criterion, tr["id"], te["id"], label) not in seen:
            seen.add((criterion, tr["id"], te["id"], label))
            report.overlaps.append(Overlap(criterion, tr["id"], te["id"], label, te.get("modality", ""), detail))

    for test in tests:
        for criterion in (c for c in EXACT_CRITERIA if c in criteria):
            index = _index(test.rows, _KEYS[criterion])
            for tr in train.rows:
                for value in _KEYS[criterion](tr):
                    for te in index.get(value, ()):
                        add(criterion, tr, te, test.label, value if criterion == "image_file" else "")
        if "near_image" in criteria:
            pixel_pairs = {(o.train_id, o.test_id) for o in report.overlaps if o.criterion == "pixel"}
            for tr, te, distance in _near_pairs(train.rows, test.rows, near_threshold):
                if (tr["id"], te["id"]) not in pixel_pairs:
                    add("near_image", tr, te, test.label, f"{distance} bits")
    return report


def assert_no_leakage(
    train_rows_or_manifest: Sequence[dict] | SplitManifest | str | os.PathLike,
    test_manifest_paths: Sequence[SplitManifest | str | os.PathLike] | str | os.PathLike,
    allow_overlap: bool = False,
    *,
    fail_on_near: bool = False,
    near_threshold: int = NEAR_THRESHOLD,
    criteria: Sequence[str] = CRITERIA,
) -> AuditReport:
    """Audit training data against test manifests before training; raise `LeakageError` on any exact overlap.

    `train_rows_or_manifest` is the list of training rows (their images are decoded once to hash them) or a
    manifest (object or path). With `allow_overlap=True` overlaps are logged as a warning instead. An incomplete
    audit (test rows without image hashes) is logged as a warning, naming what was not checked.
    """
    if isinstance(test_manifest_paths, (str, os.PathLike, SplitManifest)):
        test_manifest_paths = [test_manifest_paths]
    if isinstance(train_rows_or_manifest, (SplitManifest, str, os.PathLike)):
        train = as_manifest(train_rows_or_manifest)
    else:
        train = manifest_from_rows(train_rows_or_manifest, dataset="rows", split="train", name="training rows")
    report = audit(train, list(test_manifest_paths), criteria=criteria, near_threshold=near_threshold)
    if not report.complete:
        logger.warning("leakage audit incomplete:\n%s", report.summary(max_pairs=0))
    if report.exact or (fail_on_near and report.near):
        if not allow_overlap:
            raise LeakageError(report)
        logger.warning("training despite overlaps (allow_overlap=True):\n%s", report.summary())
    return report


@error_boundary("audit-split")
def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl audit-split TRAIN TEST [TEST ...]`: find test items leaked into a training split."""
    parser = OneLineArgumentParser(
        prog="medvlm-trl audit-split",
        description="Compare a training split manifest with test split manifests (medvlm-trl manifests or the "
        "MedVLM-R1 authors' test file). Exit status: 0 clean, 1 overlaps, 2 bad arguments, 3 some rows could not be "
        "checked.",
    )
    parser.add_argument("train", help="training split manifest (JSON)")
    parser.add_argument("tests", nargs="+", help="test split manifest(s) (JSON)")
    parser.add_argument("--criteria", default=",".join(CRITERIA), help=f"comma-separated subset of {CRITERIA}")
    parser.add_argument("--near-threshold", type=int, default=NEAR_THRESHOLD, help="Hamming bits (of 256)")
    parser.add_argument("--fail-on-near", action="store_true", help="exit 1 on near-duplicate images too")
    parser.add_argument("--allow-incomplete", action="store_true", help="exit 0 although some rows lack hashes")
    parser.add_argument("--image-root", help="hash rows that have no image hashes from the images in this folder")
    parser.add_argument("--max-pairs", type=int, default=50, help="offending pairs to print")
    parser.add_argument("--json", dest="json_out", help="also write the full report (every pair) to this file")
    args = parser.parse_args(argv)
    with wrapped_errors(RecipeError):  # a bad argument exits 2 with one line, never 1 (which says "overlaps")
        criteria = check_criteria([c.strip() for c in args.criteria.split(",") if c.strip()])
        train, tests = as_manifest(args.train), [as_manifest(t) for t in args.tests]
    if args.image_root:
        for manifest in (train, *tests):
            filled = fill_hashes(manifest, args.image_root)
            if filled:
                print(f"hashed {filled} rows of {manifest.label} from {args.image_root}")
    report = audit(train, tests, criteria=criteria, near_threshold=args.near_threshold)
    print(report.summary(max_pairs=args.max_pairs))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(report.to_dict(), fh, indent=1)
    if report.exact or (args.fail_on_near and report.near):
        return EXIT_OVERLAP
    if not report.complete and not args.allow_incomplete:
        print("audit incomplete (see NOT CHECKED above); --allow-incomplete accepts that", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0
