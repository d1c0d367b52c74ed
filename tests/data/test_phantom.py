"""The phantom world: seeded drawings whose answers are in the pixels, MedVLM-R1-shaped splits, letter-balanced tests."""

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage

from medvlm_trl.data.phantom import (
    ALL_TYPES,
    DEFAULT_TYPES,
    PHANTOM_TEST_PER_STYLE,
    PHANTOM_TRAIN_SIZE,
    QUESTION_TYPES,
    STYLES,
    balanced_schedule,
    build_phantom,
    load_phantom,
    make_items,
)
from medvlm_trl.data.prompts import LETTERS
from medvlm_trl.data.registry import load_rows
from medvlm_trl.data.schema import check_row
from medvlm_trl.eval.scoring import random_guess_accuracy


def _lesions(image, style):
    """Connected bright blobs of a phantom (an independent reading of the pixels): (count, areas, centroids)."""
    arr = np.asarray(image.convert("L"), dtype=np.float32) / 255
    arr = ndimage.uniform_filter(arr, 3)
    threshold = {"MRI": 0.75, "CT": 0.55, "X-ray": 0.6}[style]
    mask = arr > threshold
    if style == "CT":  # the skull ring is white too: keep what lies well inside it
        h = arr.shape[0]
        yy, xx = np.mgrid[0:h, 0:h] / h
        mask &= ((yy - 0.5) / 0.38) ** 2 + ((xx - 0.5) / 0.34) ** 2 <= 1.0
    labels, n = ndimage.label(mask)
    areas = ndimage.sum(mask, labels, range(1, n + 1))
    keep = [i for i, a in enumerate(areas, 1) if a >= 6]
    centroids = ndimage.center_of_mass(mask, labels, keep)
    return len(keep), [areas[i - 1] for i in keep], centroids


@pytest.mark.parametrize("style", ["MRI", "CT"])
def test_the_answer_is_what_the_image_shows(style):
    rows = make_items("test", style, 120, types=ALL_TYPES)
    sizes = {"small": [], "medium": [], "large": []}
    for row in rows:
        n, areas, centroids = _lesions(row["image"], style)
        finding = row["options"][LETTERS.index(row["answer"])]
        assert finding == row["finding"]
        if row["question_type"] == "count":
            assert n == int(finding), row["id"]
        elif row["question_type"] == "where":
            assert n == 1, row["id"]
            (cy, cx), side = centroids[0], row["image"].size[0]
            assert ("upper" if cy < side / 2 else "lower") in finding and (
                "left" if cx < side / 2 else "right"
            ) in finding
        else:
            assert n == 1, row["id"]
            sizes[finding].append(areas[0])
    # sizes are separated: every small lesion is smaller than every medium one, every medium than every large one
    assert max(sizes["small"]) < min(sizes["medium"]) and max(sizes["medium"]) < min(sizes["large"])


def test_rows_follow_the_contract_and_options_are_shuffled():
    rows = make_items("train", "MRI", 300, types=ALL_TYPES)
    for row in rows:
        check_row(row)
        assert row["question"].endswith(QUESTION_TYPES[row["question_type"]][0])
        assert 2 <= len(row["options"]) <= 6 and len(set(row["options"])) == len(row["options"])
    letters = Counter(r["answer"] for r in rows)
    assert set(letters) == set("ABCDEF")  # every position is used; no fixed order puts the truth first
    # the question text carries nothing of the answer: the same question type has every finding as its answer
    for qtype, (_, vocab) in QUESTION_TYPES.items():
        assert {r["finding"] for r in rows if r["question_type"] == qtype} == set(vocab)


@pytest.mark.parametrize("types", [DEFAULT_TYPES, ALL_TYPES])
@pytest.mark.parametrize("style", STYLES)
def test_test_sets_are_letter_balanced_so_a_constant_answer_scores_random_guess(style, types):
    rows = make_items("test", style, PHANTOM_TEST_PER_STYLE, types=types)
    groups = Counter((len(r["options"]), r["answer"]) for r in rows)
    for k in {len(r["options"]) for r in rows}:
        counts = {groups[(k, letter)] for letter in LETTERS[:k]}
        assert len(counts) == 1, (k, counts)  # each letter equally often among items with k options
    guess = random_guess_accuracy(rows, by=None)["all"]
    constant = {letter: 100 * sum(r["answer"] == letter for r in rows) / len(rows) for letter in LETTERS}
    assert constant["A"] == pytest.approx(guess)  # "A" exists in every item: it scores exactly the random guess
    assert max(constant.values()) == pytest.approx(guess)


def test_balanced_schedule_rejects_what_cannot_be_balanced():
    import random

    with pytest.raises(ValueError, match="equally often"):
        balanced_schedule(1, ("size",), random.Random(0))  # 1 item over k = 2, 3: no multiple adds up


def test_items_are_seeded_and_splits_draw_distinct_images():
    a, b = make_items("test", "CT", 30), make_items("test", "CT", 30)
    assert [np.asarray(r["image"]).tobytes() for r in a] == [np.asarray(r["image"]).tobytes() for r in b]
    train = {np.asarray(r["image"]).tobytes() for r in make_items("train", "MRI", 50)}
    test = {np.asarray(r["image"]).tobytes() for r in make_items("test", "MRI", 50)}
    assert train.isdisjoint(test)


def test_a_folder_of_fewer_question_types_loads_through_the_registry(tmp_path):
    """`build_phantom(types=...)` (the cold-start probe's smaller world) writes only those types, still balanced."""
    build_phantom(tmp_path, train_size=12, test_per_style=12, types=("size",))
    train = load_rows("phantom", "train", data_dir=str(tmp_path))
    test = load_rows("phantom", "test", data_dir=str(tmp_path))
    assert len(train) == 12 and len(test) == 36
    assert {r["question_type"] for r in train + test} == {"size"}
    assert Counter(r["answer"] for r in test if len(r["options"]) == 3) == {"A": 6, "B": 6, "C": 6}
    with pytest.raises(ValueError, match="unknown phantom question types \\['shape'\\]"):
        build_phantom(tmp_path / "bad", types=("size", "shape"))


def test_registry_serves_the_medvlm_r1_shaped_splits():
    train = load_rows("phantom", "train")
    assert {r["question_type"] for r in train} == set(DEFAULT_TYPES) == {"size"}  # version 2: what the base perceives
    assert len(train) == PHANTOM_TRAIN_SIZE and {r["modality"] for r in train} == {"MRI"}
    test = load_rows("phantom", "test")
    assert Counter(r["modality"] for r in test) == {s: PHANTOM_TEST_PER_STYLE for s in STYLES}
    assert len(load_rows("phantom", "test", modality="CT")) == PHANTOM_TEST_PER_STYLE
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in test)
    with pytest.raises(ValueError, match="splits 'train' and 'test'"):
        load_phantom("validation")


@pytest.mark.slow
def test_make_split_writes_manifests_that_audit_clean(tmp_path):
    out = tmp_path / "splits"
    run = [sys.executable, "-m", "medvlm_trl.cli"]
    made = subprocess.run([*run, "make-split", "phantom", "--out-dir", str(out)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    train = json.loads((out / "train.json").read_text())
    assert train["dataset"] == "phantom" and len(train["rows"]) == PHANTOM_TRAIN_SIZE
    audit = subprocess.run(
        [*run, "audit-split", str(out / "train.json"), str(out / "test.json")], capture_output=True, text=True
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "no overlaps found" in audit.stdout
    # the manifests select the rows again through the registry
    rows = load_rows("phantom", "test", split_file=out / "test.json", modality="X-ray")
    assert len(rows) == PHANTOM_TEST_PER_STYLE
