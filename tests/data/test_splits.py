"""MedVLM-R1's split and the study's PMC-VQA subsets: sizes, disjointness, determinism, written as manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import AUTHORS_TEST_MANIFEST_MISSING
from PIL import Image
from test_data_layouts import (
    REAL_MANIFEST,
    huatuo_record,
    make_image,
    pmc_record,
    real_records,
    save_image,
    write_huatuo,
    write_pmc_vqa,
)

from medvlm_trl.data import splits
from medvlm_trl.data.audit import assert_no_leakage, audit
from medvlm_trl.data.huatuo import load_huatuo
from medvlm_trl.data.manifest import load_manifest
from medvlm_trl.data.registry import load_rows
from medvlm_trl.data.splits import medvlm_r1_split, pmc_vqa_subsets


def synthetic_records() -> list[dict]:
    return (
        [huatuo_record(f"m{i}", "MRI") for i in range(1000)]
        + [huatuo_record(f"c{i}", "CT") for i in range(320)]
        + [huatuo_record(f"x{i}", "X-ray") for i in range(320)]
        + [huatuo_record(f"r{i}", None, dataset="VQA-RAD", question=f"Is MRI {i} normal?") for i in range(3)]
    )


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = write_huatuo(tmp_path_factory.mktemp("huatuo"), synthetic_records())
    return folder, load_huatuo(folder)


# Rows planted in the MRI pool, each overlapping one of the authors' test rows by one criterion.
PLANTED = {
    "image_file": lambda real: huatuo_record("p1", "MRI", image=real[0]["image"][0], question="Another question?"),
    "pixel": lambda real: huatuo_record("p2", "MRI", image="images/renamed_copy.bmp"),
    "near_image": lambda real: huatuo_record("p3", "MRI", image="images/resized_copy.png"),
    "question": lambda real: {**real[2], "image": ["images/p4.png"]},
}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    if not REAL_MANIFEST.is_file():
        pytest.skip(AUTHORS_TEST_MANIFEST_MISSING)
    folder = tmp_path_factory.mktemp("huatuo_official")
    real = real_records()
    clean = [huatuo_record(f"k{i}", "MRI") for i in range(700)]
    planted = [make(real) for make in PLANTED.values()]
    extra = [huatuo_record(f"e{i}", m) for i, m in enumerate(["CT", "X-ray", "Ultrasound"])]
    write_huatuo(folder, real + clean + planted + extra)
    first, second = make_image(real[0]["image"][0]), make_image(real[1]["image"][0])
    save_image(folder, "images/renamed_copy.bmp", image=first)
    save_image(folder, "images/resized_copy.png", image=second.resize((38, 30), Image.Resampling.BICUBIC))
    return folder, load_huatuo(folder), clean


def test_seeded_split_sizes_modalities_and_disjointness(synthetic):
    _, rows = synthetic
    train, test, info = medvlm_r1_split(rows, seed=3)
    assert len(train.rows) == 600 and len(test.rows) == 900
    assert [r["modality"] for r in test.rows] == ["MRI"] * 300 + ["CT"] * 300 + ["X-ray"] * 300
    assert {r["modality"] for r in train.rows} == {"MRI"}
    # Only modalities the data states: the VQA-RAD rows whose question says "MRI" are never drawn.
    assert not any(r["source"] == "VQA-RAD" for r in train.rows + test.rows)
    assert set(train.ids()).isdisjoint(test.ids())
    assert {n for r in train.rows for n in r["images"]}.isdisjoint(n for r in test.rows for n in r["images"])
    assert audit(train, [test]).overlaps == []
    assert all(r["pixel_sha256"] and r["dhash"] for r in train.rows + test.rows)
    assert info["pool"] == 700 and train.seed == test.seed == 3


def test_same_seed_same_ids_other_seed_other_ids(synthetic):
    _, rows = synthetic
    a_train, a_test, _ = medvlm_r1_split(rows, seed=1)
    b_train, b_test, _ = medvlm_r1_split(list(reversed(rows)), seed=1)  # the data's row order does not matter
    c_train, c_test, _ = medvlm_r1_split(rows, seed=2)
    assert a_train.ids() == b_train.ids() and a_test.ids() == b_test.ids()
    assert set(a_train.ids()) != set(c_train.ids()) and set(a_test.ids()) != set(c_test.ids())


def test_too_small_a_pool_is_an_error_not_a_short_split(synthetic):
    _, rows = synthetic
    with pytest.raises(ValueError, match="clean of the test split, 701 needed"):
        medvlm_r1_split(rows, seed=0, train_size=701)
    with pytest.raises(ValueError, match="320 CT rows in the data, 330 needed"):
        medvlm_r1_split(rows, seed=0, test_per_modality=330)
    with pytest.raises(ValueError, match="unknown audit criteria"):
        medvlm_r1_split(rows, seed=0, criteria=("id", "filename"))


def test_official_test_split_and_every_overlapping_row_is_kept_out_of_training(official):
    folder, rows, clean = official
    # Asking for all 700 clean rows makes the draw look at every planted row.
    train, test, info = medvlm_r1_split(rows, seed=0, test_manifest=REAL_MANIFEST, train_size=700)
    assert test.ids() == load_manifest(REAL_MANIFEST).ids()
    clean_ids = {r["id"] for r in load_huatuo(write_huatuo(folder / "clean_only", clean))}
    assert set(train.ids()) == clean_ids
    assert info["passed_over"]["rows"] == len(PLANTED)
    assert all(info["passed_over"].get(criterion, 0) >= 1 for criterion in PLANTED)
    assert train.settings["passed_over"] == info["passed_over"]


def test_make_split_cli_writes_manifests_a_run_can_name(official, tmp_path, capsys):
    folder, _, _ = official
    args = ["medvlm-r1", "--data-dir", str(folder), "--test-manifest", str(REAL_MANIFEST), "--seed", "7"]
    assert splits.main([*args, "--out-dir", str(tmp_path / "a")]) == 0
    assert splits.main([*args, "--out-dir", str(tmp_path / "b")]) == 0
    assert "test rows per modality: {'CT': 300, 'MRI': 300, 'X-ray': 300}" in capsys.readouterr().out
    for name in ("train.json", "test.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    train = json.loads((tmp_path / "a" / "train.json").read_text())
    assert train["format"] == "medvlm-trl/split-manifest" and train["split"] == "train" and train["seed"] == 7
    assert len(train["rows"]) == 600
    assert train["settings"]["source"] == f"local copy '{folder.name}'" and str(folder) not in json.dumps(train)
    assert train["settings"]["test_manifest_sha256"] and train["settings"]["test"] == REAL_MANIFEST.name

    rows = load_rows("huatuo", "train", data_dir=folder, split_file=tmp_path / "a" / "train.json")
    assert [r["id"] for r in rows] == [r["id"] for r in train["rows"]] and {r["modality"] for r in rows} == {"MRI"}
    ct = load_rows("huatuo", "test", data_dir=folder, split_file=tmp_path / "a" / "test.json", modality="CT")
    assert len(ct) == 300 and {r["modality"] for r in ct} == {"CT"}
    official_rows = load_rows("huatuo", "test", data_dir=folder, split_file=REAL_MANIFEST)
    assert len(official_rows) == 900
    with pytest.raises(ValueError, match="holds the 'test' split, not 'train'"):
        load_rows("huatuo", "train", data_dir=folder, split_file=tmp_path / "a" / "test.json")
    # What the trainer calls before its first step: clean against our test manifest and the authors' file.
    assert assert_no_leakage(rows, [tmp_path / "a" / "test.json", REAL_MANIFEST]).exact == []


@pytest.fixture(scope="module")
def pmc(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pmc")
    test = [pmc_record(f"t{i}") for i in range(50)]
    train = [pmc_record(f"{i}") for i in range(80)]
    planted = [
        pmc_record("p1", figure=test[0]["Figure_path"]),  # a test figure again, another question
        pmc_record("p2", figure="PMCcopy_F1.png"),  # a test figure re-saved losslessly under another name
        {**test[1], "Figure_path": "PMCp3_F1.jpg"},  # a test question with its options on another figure
    ]
    write_pmc_vqa(folder, {"train": train + planted, "test": test})
    save_image(folder / "images", "PMCcopy_F1.png", image=Image.open(folder / "images" / test[0]["Figure_path"]))
    return folder


def test_pmc_vqa_subsets_are_seeded_clean_and_sized(pmc, tmp_path):
    train_rows, test_rows = load_rows("pmc_vqa", "train", data_dir=pmc), load_rows("pmc_vqa", "test", data_dir=pmc)
    train, test, info = pmc_vqa_subsets(train_rows, test_rows, seed=5, train_size=80, test_size=50)
    assert len(train.rows) == 80 and len(test.rows) == 50 and info["passed_over"]["rows"] == 3
    planted = {r["id"] for r in train_rows if r["image_file"] in {"PMCt0_F1.jpg", "PMCcopy_F1.png", "PMCp3_F1.jpg"}}
    assert len(planted) == 3 and planted.isdisjoint(train.ids())
    again, _, _ = pmc_vqa_subsets(train_rows, test_rows, seed=5, train_size=80, test_size=50)
    assert again.ids() == train.ids()
    small_a, small_test_a, _ = pmc_vqa_subsets(train_rows, test_rows, seed=5, train_size=20, test_size=10)
    small_b, small_test_b, _ = pmc_vqa_subsets(train_rows, test_rows, seed=6, train_size=20, test_size=10)
    assert small_a.ids() != small_b.ids() and small_test_a.ids() != small_test_b.ids()
    # The registry's seeded test subset is the same draw as the manifest's test split.
    assert [r["id"] for r in load_rows("pmc_vqa", "test", data_dir=pmc, subset_size=10, seed=5)] == small_test_a.ids()


def test_make_split_pmc_vqa_cli(pmc, tmp_path):
    out = tmp_path / "pmc_split"
    argv = ["pmc-vqa", "--data-dir", str(pmc), "--train-size", "30", "--test-size", "20", "--out-dir", str(out)]
    assert splits.main(argv) == 0
    train = load_manifest(out / "train.json")
    assert train.settings["version"] == 1 and train.settings["test_split"] == "test" and len(train.rows) == 30
    rows = load_rows("pmc_vqa", "train", data_dir=pmc, split_file=out / "train.json")
    assert [r["id"] for r in rows] == train.ids()
    assert len(load_rows("pmc_vqa", "test", data_dir=pmc, split_file=out / "test.json")) == 20


def test_make_split_skip_bad_rows_counts_unreadable_images_met_while_drawing(tmp_path, capsys):
    """A corrupt image is found only when the draw decodes it: with --skip-bad-rows it is counted, not a crash."""
    records = [huatuo_record(f"m{i}", "MRI") for i in range(12)] + [huatuo_record(f"c{i}", "CT") for i in range(3)]
    records += [huatuo_record(f"x{i}", "X-ray") for i in range(2)]
    folder = write_huatuo(tmp_path / "h", records)
    # One in the MRI training pool, and the first CT row the seeded test draw looks at.
    ct_rows = [r for r in load_huatuo(folder) if r["modality"] == "CT"]
    first_ct = splits.seeded_order(ct_rows, 1, "test-CT")[0]
    for path in (folder / "images" / "m3.png", first_ct["image"]):
        Path(path).write_bytes(b"not a png")
    argv = ["medvlm-r1", "--data-dir", str(folder), "--test-per-modality", "2", "--train-size", "9", "--seed", "1"]
    # Without the flag: one line naming the row, exit status 2, no traceback.
    assert splits.main([*argv, "--out-dir", str(tmp_path / "strict")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medvlm-trl make-split: error: ") and f"row {first_ct['id']!r}" in err
    assert len(err.strip().splitlines()) == 1
    assert splits.main([*argv, "--skip-bad-rows", "--out-dir", str(tmp_path / "out")]) == 0
    train = load_manifest(tmp_path / "out" / "train.json")
    test = load_manifest(tmp_path / "out" / "test.json")
    assert len(train.rows) == 9 and not any("m3.png" in r["id"] for r in train.rows)
    assert len(test.rows) == 6 and first_ct["id"] not in test.ids()
    assert train.settings["skipped"] == test.settings["skipped"] == {"unreadable_image": 2}
    assert "unreadable_image: 2" in capsys.readouterr().out


def test_make_split_names_a_source_it_cannot_read(tmp_path, capsys):
    for which in ("medvlm-r1", "pmc-vqa"):
        assert splits.main([which, "--data-dir", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "o")]) == 2
        assert "nowhere: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
