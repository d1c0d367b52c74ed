"""The embedded sample set: real images, valid contract rows, a clean seeded split."""

import json

from PIL import Image

from medvlm_trl.data.sample import SOURCES, build_sample, load_sample, pixel_hash
from medvlm_trl.data.schema import check_row


def test_rows_follow_the_contract_and_images_open():
    for split in ("train", "test"):
        rows = load_sample(split)
        assert rows
        for row in rows:
            check_row(row)
            assert row["source"] == "sample"
            assert row["modality"] in {"CT", "MRI", "Ultrasound", "Nuclear medicine"}
            with Image.open(row["image"]) as img:
                assert img.mode == "RGB"


def test_no_image_in_both_splits_and_every_modality_in_both():
    train, test = load_sample("train"), load_sample("test")
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in test)
    train_hashes = {pixel_hash(Image.open(r["image"])) for r in train}
    test_hashes = {pixel_hash(Image.open(r["image"])) for r in test}
    assert train_hashes.isdisjoint(test_hashes)
    assert {r["modality"] for r in train} == {r["modality"] for r in test} == {s.modality for s in SOURCES}


def test_no_x_ray_is_passed_off():
    # No package ships a real X-ray; the set must not contain a made-up one.
    assert all(r["modality"] != "X-ray" for r in load_sample("train") + load_sample("test"))


def test_build_is_seeded(tmp_path):
    a, b = build_sample(tmp_path / "a"), build_sample(tmp_path / "b")
    assert (a / "test.jsonl").read_text() == (b / "test.jsonl").read_text()
    c = build_sample(tmp_path / "c", seed=5)
    ids = lambda p: {json.loads(x)["id"] for x in (p / "test.jsonl").read_text().splitlines()}  # noqa: E731
    assert ids(a) != ids(c)


def test_answers_match_what_the_image_shows():
    for row in load_sample("train"):
        text = row["options"]["ABCDEF".index(row["answer"])]
        if row["question_type"] == "modality":
            assert text == row["modality"]
        if row["question_type"] == "orientation":
            variant = int(row["id"].rsplit("-", 1)[1])
            expected = ["Original orientation", "Mirrored left-right", "Upside down (rotated 180 degrees)"]
            assert text == (expected[variant % 4] if variant % 4 < 3 else "Rotated 90 degrees")
