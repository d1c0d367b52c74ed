"""Seeded, leak-free splits written as manifests: MedVLM-R1's 600 / 3 x 300 split and the study's PMC-VQA subsets.

MedVLM-R1 (section 4): GRPO on 600 MRI questions from the HuatuoGPT-Vision evaluation data; tests on 300 MRI,
300 CT and 300 X-ray questions. The test split is published (the authors' MRI_CT_XRAY_300each_dataset.json, rows
0-299 MRI, 300-599 CT, 600-899 X-ray); `medvlm_r1_split` takes it as the test split when given, or else draws 300
per modality with the seed. The training split is then drawn, with the seed, from the MRI rows minus every row the
audit (`medvlm_trl.data.audit`) matches in the test split: same id, same image file, same pixels, a near-duplicate
image, or the same question with the same options. The authors' released code instead takes the first 500 MRI rows
of the data (`select(range(500))`, then shuffles them) and writes no split file; we follow the paper's 600 and write
the split down, so a run can name it.

Modalities come from the data (OmniMedVQA's `subset`), not the keyword rule, for both splits: the paper's test
questions are all OmniMedVQA rows, and a keyword guess should not decide what counts as an MRI question.

The RL-MedVQA study trains on a 10K subset of PMC-VQA's training CSV and tests on a 7K subset of its test CSV;
`pmc_vqa_subsets` draws both with the seed, the training rows again from those the audit finds clean.

Your own data (`medvlm_trl.data.generic`, or OmniMedVQA): `dataset_split` draws a seeded test split, a fraction
or a count of the rows (per modality with `by_modality`), and trains on every other row the audit finds clean of it;
the manifests record how the data was read (`settings.data`), so `medvlm-trl eval --split test.json` reads the same
rows.

`medvlm-trl make-split medvlm-r1|pmc-vqa|phantom|dataset ...` writes `train.json` and `test.json` into `--out-dir`.
"""

from __future__ import annotations

import argparse
import os
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from medvlm_trl.cli import error_boundary
from medvlm_trl.data.audit import CRITERIA, EXACT_CRITERIA, NEAR_THRESHOLD, audit, check_criteria
from medvlm_trl.data.images import ImageLoadError
from medvlm_trl.data.manifest import (
    SplitManifest,
    as_manifest,
    entry_for_row,
    file_sha256,
    hamming,
    hash_matrix,
    manifest_from_rows,
    select_rows,
)
from medvlm_trl.data.pmc_vqa import STUDY_TEST_SIZE, STUDY_TRAIN_SIZE
from medvlm_trl.data.schema import CT, MRI, XRAY, BadRowError, SkipReport
from medvlm_trl.errors import RecipeError, wrapped_errors
from medvlm_trl.recipe import OneLineArgumentParser, load_yaml

MEDVLM_R1_TRAIN_SIZE = 600
MEDVLM_R1_TEST_PER_MODALITY = 300
MEDVLM_R1_TEST_MODALITIES = (MRI, CT, XRAY)


class LeakIndex:
    """The test split's fingerprints, to check training candidates one at a time as they are drawn."""

    def __init__(self, test: SplitManifest, criteria: Sequence[str], near_threshold: int):
        self.criteria, self.near_threshold = check_criteria(criteria), near_threshold
        self.keys = {
            "id": {row["id"] for row in test.rows},
            "image_file": {name for row in test.rows for name in row.get("images") or []},
            "pixel": {sha for row in test.rows for sha in row.get("pixel_sha256") or []},
            "question": {row["question_sha256"] for row in test.rows},
        }
        self.near = hash_matrix([h for row in test.rows for h in row.get("dhash") or [] if h])

    def matches(self, entry: dict) -> list[str]:
        """The criteria by which `entry` (a manifest row) overlaps the test split."""
        values = {
            "id": [entry["id"]],
            "image_file": entry.get("images") or [],
            "pixel": entry.get("pixel_sha256") or [],
            "question": [entry["question_sha256"]],
        }
        hits = [c for c in EXACT_CRITERIA if c in self.criteria and any(v in self.keys[c] for v in values[c])]
        hashes = [h for h in entry.get("dhash") or [] if h]
        if "near_image" in self.criteria and hashes and len(self.near):
            if (hamming(hash_matrix(hashes), self.near) <= self.near_threshold).any():
                hits.append("near_image")
        return hits


def seeded_order(rows: Sequence[dict], seed: int, purpose: str) -> list[dict]:
    """Rows sorted by id, then shuffled by a generator seeded with `seed` and `purpose` (independent streams)."""
    ordered = sorted(rows, key=lambda r: r["id"])
    random.Random(f"{purpose}-{seed}").shuffle(ordered)
    return ordered


def draw_clean(
    pool: Sequence[dict],
    size: int | None,
    *,
    seed: int,
    test: SplitManifest | None,
    criteria: Sequence[str] = CRITERIA,
    near_threshold: int = NEAR_THRESHOLD,
    purpose: str = "train",
    report: SkipReport | None = None,
) -> tuple[list[dict], list[dict], Counter]:
    """Draw `size` rows from `pool` in seeded order, passing over every row the audit matches in `test` (if any).

    `size=None` takes every clean row. Equivalent to a seeded sample of the pool minus all matches, but decodes only the images it looks at. An image
    that cannot be read raises `ImageLoadError` naming the row, or, given a `report` (`skip_bad_rows`), is counted
    there as `unreadable_image` and passed over. Returns the rows, their manifest entries (hashed) and the count of
    passed-over rows per criterion.
    """
    index = LeakIndex(test, criteria, near_threshold) if test is not None else None
    rows, entries, excluded = [], [], Counter()
    if size is None:  # every row clean of the test split
        size = -1
    for row in seeded_order(pool, seed, purpose):
        try:
            entry = entry_for_row(row, hash_images=True)
        except ImageLoadError as err:
            if report is None:
                raise
            report.add(BadRowError(row["id"], "unreadable_image", str(err)))
            continue
        hits = index.matches(entry) if index is not None else []
        if hits:
            excluded.update(hits)
            excluded["rows"] += 1
            continue
        rows.append(row)
        entries.append(entry)
        if len(rows) == size:
            return rows, entries, excluded
    if size == -1:
        return rows, entries, excluded
    what = "clean of the test split" if test is not None else "readable"
    raise ValueError(
        f"only {len(rows)} of {len(pool)} candidate rows are {what}, {size} needed (passed over: {dict(excluded)})"
    )


def _split_clean_of_test(
    test_rows: Sequence[dict],
    test_entries: list[dict] | None,
    pool: Sequence[dict],
    train_size: int | None,
    *,
    dataset: str,
    name: str,
    seed: int,
    criteria: Sequence[str],
    near_threshold: int,
    settings: dict,
    report: SkipReport | None,
) -> tuple[SplitManifest, SplitManifest, dict]:
    """The test manifest (`test_entries` when drawn, else the rows hashed), the training rows drawn clean of it,
    and a proof that the two are disjoint."""
    if test_entries is None:
        test = manifest_from_rows(
            test_rows, dataset=dataset, split="test", name=name, seed=seed, settings=settings, hash_images=True
        )
    else:
        test = SplitManifest(dataset=dataset, split="test", rows=test_entries, name=name, seed=seed, settings=settings)
    _, entries, excluded = draw_clean(
        pool, train_size, seed=seed, test=test, criteria=criteria, near_threshold=near_threshold, report=report
    )
    info = {"pool": len(pool), "passed_over": dict(excluded)}
    train = SplitManifest(
        dataset=dataset, split="train", rows=entries, name=name, seed=seed, settings={**settings, **info}
    )
    report = audit(train, [test], criteria=criteria, near_threshold=near_threshold)
    if report.overlaps:  # cannot happen by construction; a bug here must not produce a leaky split
        raise AssertionError("the split is not disjoint:\n" + report.summary())
    return train, test, info


def medvlm_r1_split(
    rows: Sequence[dict],
    *,
    seed: int = 42,
    test_manifest: SplitManifest | str | os.PathLike | None = None,
    train_size: int = MEDVLM_R1_TRAIN_SIZE,
    test_per_modality: int = MEDVLM_R1_TEST_PER_MODALITY,
    criteria: Sequence[str] = CRITERIA,
    near_threshold: int = NEAR_THRESHOLD,
    settings: dict | None = None,
    report: SkipReport | None = None,
) -> tuple[SplitManifest, SplitManifest, dict]:
    """MedVLM-R1's split of HuatuoGPT-Vision rows (from `load_huatuo`): `(train manifest, test manifest, info)`.

    With `test_manifest` (the authors' file or a manifest) its rows are the test split, looked up in `rows` by id;
    otherwise `test_per_modality` rows per modality are drawn with `seed`. Training rows: `train_size` MRI rows
    drawn with `seed` from those the audit finds clean of the test split. Both manifests carry image hashes. A drawn
    row whose image cannot be read raises `ImageLoadError`, or with a `report` is counted and passed over; a row of
    a given `test_manifest` always raises (the published test split is not redrawn).
    """
    stated = [r for r in rows if r.get("modality_from") == "subset"]
    if test_manifest is not None:
        official = as_manifest(test_manifest)
        test_rows, test_entries = select_rows(rows, official), None
        test_origin = official.label
        if official.path:
            settings = {**(settings or {}), "test_manifest_sha256": file_sha256(official.path)}
    else:
        test_rows, test_entries = [], []
        for modality in MEDVLM_R1_TEST_MODALITIES:
            pool = [r for r in stated if r["modality"] == modality]
            if len(pool) < test_per_modality:
                raise ValueError(f"{len(pool)} {modality} rows in the data, {test_per_modality} needed for the test")
            drawn, entries, _ = draw_clean(
                pool, test_per_modality, seed=seed, test=None, purpose=f"test-{modality}", report=report
            )
            test_rows += drawn
            test_entries += entries
        test_origin = f"seeded draw, {test_per_modality} per modality"
    common = {
        **(settings or {}),
        "criteria": list(criteria),
        "near_threshold": near_threshold,
        "test": test_origin,
        "modality_rule": "OmniMedVQA subset (stated by the data)",
    }
    test_ids = {r["id"] for r in test_rows}
    pool = [r for r in stated if r["modality"] == MRI and r["id"] not in test_ids]
    return _split_clean_of_test(
        test_rows,
        test_entries,
        pool,
        train_size,
        dataset="huatuo",
        name="medvlm_r1",
        seed=seed,
        criteria=criteria,
        near_threshold=near_threshold,
        settings=common,
        report=report,
    )


def pmc_vqa_subsets(
    train_rows: Sequence[dict],
    test_rows: Sequence[dict],
    *,
    seed: int = 42,
    train_size: int = STUDY_TRAIN_SIZE,
    test_size: int = STUDY_TEST_SIZE,
    criteria: Sequence[str] = CRITERIA,
    near_threshold: int = NEAR_THRESHOLD,
    settings: dict | None = None,
    report: SkipReport | None = None,
) -> tuple[SplitManifest, SplitManifest, dict]:
    """The study's PMC-VQA subsets: `test_size` seeded test rows, then `train_size` seeded training rows clean of them.

    A row whose image cannot be read raises `ImageLoadError`, or with a `report` is counted and passed over.
    """
    if len(test_rows) < test_size:
        raise ValueError(f"{len(test_rows)} test rows, {test_size} needed")
    common = {**(settings or {}), "criteria": list(criteria), "near_threshold": near_threshold}
    drawn, entries, _ = draw_clean(test_rows, test_size, seed=seed, test=None, purpose="pmc_vqa-test", report=report)
    return _split_clean_of_test(
        drawn,
        entries,
        train_rows,
        train_size,
        dataset="pmc_vqa",
        name="pmc_vqa_study",
        seed=seed,
        criteria=criteria,
        near_threshold=near_threshold,
        settings=common,
        report=report,
    )


def dataset_split(
    rows: Sequence[dict],
    *,
    dataset: str,
    name: str = "",
    seed: int = 42,
    test_size: float = 0.2,
    by_modality: bool = False,
    train_size: int | None = None,
    criteria: Sequence[str] = CRITERIA,
    near_threshold: int = NEAR_THRESHOLD,
    settings: dict | None = None,
    report: SkipReport | None = None,
) -> tuple[SplitManifest, SplitManifest, dict]:
    """A seeded train/test split of any dataset's rows: `(train manifest, test manifest, info)`.

    `test_size` below 1 is a fraction of the rows (of each modality's rows with `by_modality`), rounded, at least one
    row; 1 or more is a row count (per modality with `by_modality`). The training split is every other row the audit
    finds clean of the test split (or `train_size` of them, drawn with the seed).
    """
    if test_size <= 0:
        raise ValueError(f"test_size must be a fraction in (0, 1) or a row count, got {test_size}")
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(str(row["modality"]) if by_modality else "all", []).append(row)
    test_rows, test_entries = [], []
    for group, pool in sorted(groups.items()):
        size = int(test_size) if test_size >= 1 else max(1, round(test_size * len(pool)))
        if size >= len(pool):
            what = f"the {group} rows" if by_modality else "the rows"
            raise ValueError(f"test_size {test_size} takes {size} of {len(pool)} of {what}, leaving none to train on")
        drawn, entries, _ = draw_clean(pool, size, seed=seed, test=None, purpose=f"test-{group}", report=report)
        test_rows += drawn
        test_entries += entries
    test_ids = {row["id"] for row in test_rows}
    common = {
        **(settings or {}),
        "test_size": test_size,
        "by_modality": by_modality,
        "criteria": list(criteria),
        "near_threshold": near_threshold,
    }
    return _split_clean_of_test(
        test_rows,
        test_entries,
        [row for row in rows if row["id"] not in test_ids],
        train_size,
        dataset=dataset,
        name=name,
        seed=seed,
        criteria=criteria,
        near_threshold=near_threshold,
        settings=common,
        report=report,
    )


def _source_label(source: str) -> str:
    """How a manifest records where the data came from: a hub id as is, a local path by its name only."""
    return source if not Path(source).expanduser().exists() else f"local copy '{Path(source).name}'"


def _write(train: SplitManifest, test: SplitManifest, out_dir: str, info: dict) -> None:
    out = Path(out_dir)
    train.save(out / "train.json")
    test.save(out / "test.json")
    modalities = Counter(row["modality"] for row in test.rows)
    print(f"wrote {out / 'train.json'} ({len(train.rows)} rows) and {out / 'test.json'} ({len(test.rows)} rows)")
    print(f"  test rows per modality: {dict(sorted(modalities.items()))}")
    print(f"  training pool: {info['pool']} rows; passed over as overlapping the test split: {info['passed_over']}")


@error_boundary("make-split")
def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl make-split medvlm-r1|pmc-vqa|phantom`: write a split's train and test manifests."""
    from medvlm_trl.data import pmc_vqa

    parser = OneLineArgumentParser(prog="medvlm-trl make-split", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="which", required=True)
    for name in ("medvlm-r1", "pmc-vqa"):
        p = sub.add_parser(name)
        p.add_argument("--data-dir", help="hub dataset id or local copy (default: the hub id)")
        p.add_argument("--out-dir", default=f"splits/{name.replace('-', '_')}")
        p.add_argument("--seed", type=int, default=42)
        p.add_argument("--skip-bad-rows", action="store_true", help="drop and count bad rows instead of failing")
        p.add_argument("--criteria", default=",".join(CRITERIA), help="what excludes a training row")
        p.add_argument("--near-threshold", type=int, default=NEAR_THRESHOLD)
    r1 = sub.choices["medvlm-r1"]
    r1.add_argument("--test-manifest", help="the authors' MRI_CT_XRAY_300each_dataset.json (else a seeded draw)")
    r1.add_argument("--train-size", type=int, default=MEDVLM_R1_TRAIN_SIZE)
    r1.add_argument("--test-per-modality", type=int, default=MEDVLM_R1_TEST_PER_MODALITY)
    ph = sub.add_parser("phantom", help="the phantom drawings (medvlm_trl.data.phantom): 600 MRI / 3 x 300 test")
    ph.add_argument("--data-dir", help="a phantom build (default: the cached one)")
    ph.add_argument("--out-dir", default="splits/phantom")
    pmc = sub.choices["pmc-vqa"]
    pmc.add_argument("--version", type=int, default=1, choices=sorted(pmc_vqa.CSV_FILES))
    pmc.add_argument("--test-split", default="test", help="test CSV: test, or test_clean (version 1)")
    pmc.add_argument("--train-size", type=int, default=pmc_vqa.STUDY_TRAIN_SIZE)
    pmc.add_argument("--test-size", type=int, default=pmc_vqa.STUDY_TEST_SIZE)
    ds = sub.add_parser(
        "dataset",
        help="your own data (csv, json, parquet, imagefolder, a hub id, a local path) or omnimedvqa",
        description="A seeded train/test split of data read through `datasets` (or OmniMedVQA). The data options "
        "are the recipe keys of the same names; --config reads them from a training recipe (its other keys are "
        "ignored), and flags given here win.",
    )
    ds.add_argument("--config", help="a recipe YAML whose data keys (dataset_name, data_files, ...) to read")
    ds.add_argument("--dataset_name", help="csv, json, parquet, arrow, imagefolder, a hub id, a path, omnimedvqa")
    ds.add_argument("--data_files", nargs="+", help="the data's files (paths or globs)")
    ds.add_argument("--data_dir", help="datasets' data_dir (OmniMedVQA: its folder or hub id)")
    ds.add_argument("--dataset_config", help="a hub dataset's configuration name")
    ds.add_argument("--dataset_columns", help="the column mapping as a JSON object")
    ds.add_argument("--image_root", help="folder of relative image paths (default: the data files' folder)")
    ds.add_argument("--source_split", help="the dataset split to split (default: train; OmniMedVQA: test)")
    ds.add_argument("--test_size", type=float, default=0.2, help="a fraction (< 1) or a row count of the test split")
    ds.add_argument("--by_modality", action="store_true", help="test_size per modality (a stratified split)")
    ds.add_argument("--train_size", type=int, help="draw this many training rows (default: every clean row)")
    ds.add_argument("--name", default="", help="the split's name in its manifests")
    ds.add_argument("--out-dir", "--out_dir", dest="out_dir", default="splits/dataset")
    ds.add_argument("--seed", type=int, default=42)
    ds.add_argument("--skip-bad-rows", "--skip_bad_rows", dest="skip_bad_rows", action="store_true")
    ds.add_argument("--criteria", default=",".join(CRITERIA), help="what excludes a training row")
    ds.add_argument("--near-threshold", "--near_threshold", dest="near_threshold", type=int, default=NEAR_THRESHOLD)
    args = parser.parse_args(argv)
    with wrapped_errors(RecipeError):  # bad data, a bad manifest or an unreachable source: one line naming it
        if args.which == "dataset":
            return _make_dataset_split(args)
        return _make_split(args)


def _make_split(args: argparse.Namespace) -> int:
    from medvlm_trl.data import huatuo, pmc_vqa

    if args.which == "phantom":
        from medvlm_trl.data.phantom import phantom_manifests

        train, test, info = phantom_manifests(args.data_dir)
        _write(train, test, args.out_dir, info)
        return 0
    criteria = tuple(c.strip() for c in args.criteria.split(",") if c.strip())
    report = SkipReport()

    if args.which == "medvlm-r1":
        source = args.data_dir or huatuo.HUB_ID
        rows = huatuo.load_huatuo(source, skip_bad_rows=args.skip_bad_rows, report=report)
        print(huatuo.format_summary(rows))
        settings = {"loader": "huatuo", "source": _source_label(source), "skip_bad_rows": args.skip_bad_rows}
        train, test, info = medvlm_r1_split(
            rows,
            seed=args.seed,
            test_manifest=args.test_manifest,
            train_size=args.train_size,
            test_per_modality=args.test_per_modality,
            criteria=criteria,
            near_threshold=args.near_threshold,
            settings=settings,
            report=report if args.skip_bad_rows else None,
        )
    else:
        source = args.data_dir or pmc_vqa.HUB_ID
        load = dict(version=args.version, skip_bad_rows=args.skip_bad_rows, report=report)
        train_rows = pmc_vqa.load_pmc_vqa(source, "train", **load)
        test_rows = pmc_vqa.load_pmc_vqa(source, args.test_split, **load)
        settings = {
            "loader": "pmc_vqa",
            "source": _source_label(source),
            "version": args.version,
            "test_split": args.test_split,
            "skip_bad_rows": args.skip_bad_rows,
        }
        train, test, info = pmc_vqa_subsets(
            train_rows,
            test_rows,
            seed=args.seed,
            train_size=args.train_size,
            test_size=args.test_size,
            criteria=criteria,
            near_threshold=args.near_threshold,
            settings=settings,
            report=report if args.skip_bad_rows else None,
        )
    for manifest in (train, test):  # rows dropped at load time and, with their unreadable images, while drawing
        manifest.settings["skipped"] = dict(report.counts)
    if report.total:
        print(report)
    _write(train, test, args.out_dir, info)
    return 0


DATA_KEYS = ("dataset_name", "data_files", "data_dir", "dataset_config", "dataset_columns", "image_root")


def _data_options(args: argparse.Namespace) -> dict:
    """The data keys from `--config` (a recipe), overridden by the flags given."""
    options: dict = {}
    if args.config:
        recipe = load_yaml(args.config)
        options = {k: recipe[k] for k in DATA_KEYS if recipe.get(k) is not None}
    options.update({k: getattr(args, k) for k in DATA_KEYS if getattr(args, k) is not None})
    if not options.get("dataset_name"):
        raise ValueError("dataset_name is required (--dataset_name, or a --config recipe that sets it)")
    if isinstance(options.get("data_files"), str):
        options["data_files"] = [options["data_files"]]
    return options


def _make_dataset_split(args: argparse.Namespace) -> int:
    from medvlm_trl.data.generic import data_settings, parse_columns
    from medvlm_trl.data.registry import load_rows

    options = _data_options(args)
    name = options.pop("dataset_name")
    if "dataset_columns" in options:
        options["dataset_columns"] = parse_columns(options["dataset_columns"])
    source_split = args.source_split or ("test" if name == "omnimedvqa" else "train")
    data_dir = options.pop("data_dir", None)
    criteria = tuple(c.strip() for c in args.criteria.split(",") if c.strip())
    report = SkipReport()
    rows = load_rows(name, source_split, data_dir=data_dir, skip_bad_rows=args.skip_bad_rows, report=report, **options)
    settings = {
        "loader": name,
        "data": data_settings(name, data_dir=data_dir, **options),
        "source_split": source_split,
        "skip_bad_rows": args.skip_bad_rows,
    }
    train, test, info = dataset_split(
        rows,
        dataset=name,
        name=args.name,
        seed=args.seed,
        test_size=args.test_size,
        by_modality=args.by_modality,
        train_size=args.train_size,
        criteria=criteria,
        near_threshold=args.near_threshold,
        settings=settings,
        report=report if args.skip_bad_rows else None,
    )
    for manifest in (train, test):
        manifest.settings["skipped"] = dict(report.counts)
    if report.total:
        print(report)
    _write(train, test, args.out_dir, info)
    return 0
