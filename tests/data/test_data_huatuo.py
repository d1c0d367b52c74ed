"""HuatuoGPT-Vision evaluation data: the upstream JSON layout in, contract rows out, bad rows stopped or counted."""

from __future__ import annotations

import json

import pytest
from test_data_layouts import REAL_MANIFEST, huatuo_record, needs_real_manifest, real_records, write_huatuo

from medvlm_trl.data.huatuo import format_summary, load_huatuo, subset_modality, summarize
from medvlm_trl.data.images import ImageLoadError, load_image
from medvlm_trl.data.schema import BadRowError, SkipReport, check_row, modality_from_text


@pytest.fixture
def records():
    return [
        huatuo_record("mr1", "MRI", answer_index=3),
        huatuo_record("ct1", "CT", answer_index=1),
        huatuo_record("xr1", "X-ray"),
        huatuo_record("us1", "Ultrasound"),
        huatuo_record("rad1", None, dataset="VQA-RAD", question="Is this an MRI of the brain?"),
        huatuo_record(
            "rad2", None, dataset="VQA-RAD", question="What modality is used?", options=["CT", "MRI"], answer_index=0
        ),
        huatuo_record("slake1", None, dataset="SLAKE", image="images/xray_chest_slake1.png", question="Is it normal?"),
        huatuo_record("path1", None, dataset="PathVQA", question="Is there necrosis?"),
        huatuo_record("slake2", None, dataset="SLAKE", question="Where is the lesion?"),
    ]


def test_rows_follow_the_contract_with_letters_and_lazy_paths(tmp_path, records):
    rows = load_huatuo(write_huatuo(tmp_path, records))
    assert len(rows) == len(records)
    for row, record in zip(rows, records):
        check_row(row)
        assert row["options"][ord(row["answer"]) - ord("A")] == record["answer"]
        assert isinstance(row["image"], str) and row["image"] == str(tmp_path / record["image"][0])
        assert row["image_file"] == record["image"][0]
        assert row["source"] == record["dataset"]
    assert rows[0]["answer"] == "D" and rows[1]["answer"] == "B"


def test_modality_comes_from_the_subset_where_the_data_says_it_else_from_the_documented_rule(tmp_path, records):
    rows = {r["image_file"].split("/")[-1].split(".")[0]: r for r in load_huatuo(write_huatuo(tmp_path, records))}
    assert [(rows[k]["modality"], rows[k]["modality_from"]) for k in ("mr1", "ct1", "xr1", "us1")] == [
        ("MRI", "subset"),
        ("CT", "subset"),
        ("X-ray", "subset"),
        ("Ultrasound", "subset"),
    ]
    assert (rows["rad1"]["modality"], rows["rad1"]["modality_from"]) == ("MRI", "question")
    # The question names no modality; the correct option's text does (the distractor "MRI" does not count).
    assert (rows["rad2"]["modality"], rows["rad2"]["modality_from"]) == ("CT", "answer")
    slake = rows["xray_chest_slake1"]
    assert (slake["modality"], slake["modality_from"]) == ("X-ray", "image_path")
    assert (rows["path1"]["modality"], rows["path1"]["modality_from"]) == ("Pathology", "default")
    assert (rows["slake2"]["modality"], rows["slake2"]["modality_from"]) == ("Other", "default")


@pytest.mark.parametrize(
    "subset, modality",
    [
        ("MR (Mag-netic Resonance Imaging)", "MRI"),
        ("CT(Computed Tomography)", "CT"),
        ("X-Ray", "X-ray"),
        ("Fundus Photography", "Fundus Photography"),
        ("", None),
    ],
)
def test_subset_names(subset, modality):
    assert subset_modality(subset) == modality


@pytest.mark.parametrize(
    "texts, expected",
    [
        (("Chest x-ray: what is seen?",), ("X-ray", 0)),
        (("Axial T2-weighted image of the knee",), ("MRI", 0)),
        (("images/ct_scan_01.png",), ("CT", 0)),
        (("Is this a CT or an MRI?",), None),  # naming two modalities decides nothing
        (("Is this a CT or an MRI?", "MRI"), ("MRI", 1)),
        (("Where is the lesion?", None, "images/xmlab1/source.jpg"), None),
    ],
)
def test_the_keyword_rule(texts, expected):
    assert modality_from_text(*texts) == expected


def test_rows_are_counted_per_source_and_modality(tmp_path, records):
    rows = load_huatuo(write_huatuo(tmp_path, records))
    counts = summarize(rows)
    assert counts[("OmniMedVQA", "MRI")] == 1 and counts[("VQA-RAD", "MRI")] == 1 and counts[("VQA-RAD", "CT")] == 1
    assert sum(counts.values()) == len(records)
    table = format_summary(rows).splitlines()
    assert table[0].split()[:2] == ["source", "CT"]
    assert table[-1].split()[-1] == str(len(records))
    vqa_rad = next(line for line in table if line.startswith("VQA-RAD")).split()
    assert vqa_rad[-1] == "2"


def test_images_zip_is_unpacked_once(tmp_path, records):
    folder = write_huatuo(tmp_path, records, zip_images=True)
    assert not (folder / "images").exists()
    rows = load_huatuo(folder)
    assert (folder / "images").is_dir() and all(load_image(r["image"], row_id=r["id"]).mode == "RGB" for r in rows)
    (folder / "images.zip").write_bytes(b"not a zip any more")  # a second load must not touch the archive
    assert [r["id"] for r in load_huatuo(folder)] == [r["id"] for r in rows]


def test_a_hub_id_is_downloaded_and_a_local_path_is_read(tmp_path, records, fake_download):
    folder = write_huatuo(tmp_path / "snapshot", records)
    calls = fake_download(folder)
    from_hub = load_huatuo("FreedomIntelligence/Medical_Multimodal_Evaluation_Data")
    assert [repo for repo, _ in calls] == ["FreedomIntelligence/Medical_Multimodal_Evaluation_Data"]
    assert [r["id"] for r in load_huatuo(folder)] == [r["id"] for r in from_hub]
    # a local folder never goes to the hub
    assert [repo for repo, _ in calls] == ["FreedomIntelligence/Medical_Multimodal_Evaluation_Data"]
    with pytest.raises(FileNotFoundError, match="not a hub dataset id"):
        load_huatuo(str(tmp_path / "no" / "such" / "folder"))

    fake_download(OSError("offline"))
    with pytest.raises(FileNotFoundError, match="could not be fetched .OSError: offline"):
        load_huatuo("someone/typo_in_a_local_path")


def _bad(record_update: dict | None = None, **kw) -> dict:
    record = huatuo_record("bad", "MRI")
    record.update(record_update or {})
    return record


BAD_ROWS = {
    "answer_not_in_options": _bad({"answer": "Something else"}),
    "option_count": _bad({"options": ["only one"], "answer": "only one"}),
    "too_many_options": _bad({"options": [f"o{i}" for i in range(7)], "answer": "o0"}),
    "answer_mismatch": _bad({"solution": "C"}),
    "empty_question": _bad({"question": "  "}),
}


@pytest.mark.parametrize("name", sorted(BAD_ROWS))
def test_each_bad_row_raises_naming_the_row_or_is_skipped_and_counted(tmp_path, name):
    good = huatuo_record("good", "MRI")
    folder = write_huatuo(tmp_path, [good, BAD_ROWS[name]])
    with pytest.raises(BadRowError) as err:
        load_huatuo(folder)
    reason = "option_count" if name == "too_many_options" else name
    assert err.value.reason == reason and "bad" in str(err.value)
    report = SkipReport()
    rows = load_huatuo(folder, skip_bad_rows=True, report=report)
    assert [r["image_file"] for r in rows] == ["images/good.png"]
    assert dict(report.counts) == {reason: 1}


def test_missing_image_duplicate_id_and_unreadable_image(tmp_path):
    good, missing, dup = huatuo_record("good"), huatuo_record("missing"), huatuo_record("good")
    broken = huatuo_record("broken")
    folder = write_huatuo(tmp_path, [good, missing, dup, broken], skip_images=("images/missing.png",))
    (folder / "images" / "broken.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(BadRowError, match="missing.png") as err:
        load_huatuo(folder)
    assert err.value.reason == "missing_image"
    report = SkipReport()
    rows = load_huatuo(folder, skip_bad_rows=True, report=report)
    # Lazy by default: existence is checked at load, readability where the image is used, naming the row.
    assert dict(report.counts) == {"missing_image": 1, "duplicate_id": 1}
    assert [r["image_file"] for r in rows] == ["images/good.png", "images/broken.png"]
    with pytest.raises(ImageLoadError, match="broken"):
        load_image(rows[1]["image"], row_id=rows[1]["id"])
    report = SkipReport()
    rows = load_huatuo(folder, skip_bad_rows=True, report=report, check_images="decode")
    assert dict(report.counts) == {"missing_image": 1, "duplicate_id": 1, "unreadable_image": 1}
    assert [r["image_file"] for r in rows] == ["images/good.png"]


def test_multi_image_rows_are_left_out_and_counted_not_raised(tmp_path):
    two = huatuo_record("two")
    two["image"] = ["images/two_a.png", "images/two_b.png"]
    report = SkipReport()
    rows = load_huatuo(write_huatuo(tmp_path, [huatuo_record("one"), two]), report=report)
    assert len(rows) == 1 and dict(report.counts) == {"multi_image": 1}


def test_ids_are_stable_and_follow_the_content(tmp_path):
    a = load_huatuo(write_huatuo(tmp_path / "a", [huatuo_record("x"), huatuo_record("y")]))
    b = load_huatuo(write_huatuo(tmp_path / "b", [huatuo_record("y"), huatuo_record("x")]))
    assert sorted(r["id"] for r in a) == sorted(r["id"] for r in b)
    assert a[0]["id"].startswith("OmniMedVQA:images/x.png:")


def test_a_large_index_loads_lazily(tmp_path):
    # 17,300 rows (the size of the real data) over a few image files: loading decodes no image.
    records = [huatuo_record(f"r{i}", "MRI", image=f"images/img{i % 10}.png") for i in range(17_300)]
    rows = load_huatuo(write_huatuo(tmp_path, records))
    assert len(rows) == 17_300 and len({r["id"] for r in rows}) == 17_300


@needs_real_manifest
def test_the_authors_test_file_loads_with_the_papers_random_guess_rows():
    rows = load_huatuo(REAL_MANIFEST, check_images="none")
    assert len(rows) == 900 and len({r["id"] for r in rows}) == 900
    assert [r["modality"] for r in rows] == ["MRI"] * 300 + ["CT"] * 300 + ["X-ray"] * 300
    with open(REAL_MANIFEST) as fh:
        assert [r["answer"] for r in rows] == [r["solution"] for r in json.load(fh)]
    # MedVLM-R1 Table 1's random-guess row, from the data: mean of 1 / number of options.
    guess = {m: 100 * sum(1 / len(r["options"]) for r in rows if r["modality"] == m) / 300 for m in ("MRI", "CT")}
    guess["X-ray"] = 100 * sum(1 / len(r["options"]) for r in rows if r["modality"] == "X-ray") / 300
    assert {m: round(v, 2) for m, v in guess.items()} == {"MRI": 25.0, "CT": 30.25, "X-ray": 26.0}


@needs_real_manifest
def test_the_authors_rows_are_the_same_rows_inside_the_full_data(tmp_path):
    # Ids are content ids, so the same question on the same image has one id in both files.
    folder = write_huatuo(tmp_path, real_records() + [huatuo_record("extra")])
    ids = {r["id"] for r in load_huatuo(folder)}
    assert {r["id"] for r in load_huatuo(REAL_MANIFEST, check_images="none")} < ids


MALFORMED_FIELDS = {
    "image is a number": ({"image": 5}, "missing_image"),
    "image is a dict": ({"image": {"path": "images/bad.png"}}, "missing_image"),
    "image list holds null": ({"image": [None]}, "missing_image"),
    "question is a number": ({"question": 5}, "empty_question"),
    "question is a list": ({"question": ["Which finding?"]}, "empty_question"),
    "an option is null": ({"options": [None, "finding bad x"], "answer": "finding bad x"}, "empty_option"),
    "an option is a list": ({"options": [["a"], "finding bad x"], "answer": "finding bad x"}, "empty_option"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_FIELDS))
def test_a_field_of_the_wrong_type_is_a_bad_row_not_a_crash_or_a_made_up_value(tmp_path, name):
    update, reason = MALFORMED_FIELDS[name]
    folder = write_huatuo(tmp_path, [huatuo_record("good")])
    bad = {**huatuo_record("bad"), **update}
    data = folder / "medical_multimodel_evaluation_data.json"
    data.write_text(json.dumps([huatuo_record("good"), bad]))
    with pytest.raises(BadRowError) as err:
        load_huatuo(folder)
    assert err.value.reason == reason
    report = SkipReport()
    rows = load_huatuo(folder, skip_bad_rows=True, report=report)
    assert [r["image_file"] for r in rows] == ["images/good.png"] and dict(report.counts) == {reason: 1}


@pytest.mark.parametrize("content", [b"", b"[{", b'[{"question": "\xff"}]'])
def test_a_data_file_that_is_not_json_names_the_file(tmp_path, content):
    folder = write_huatuo(tmp_path, [huatuo_record("good")])
    (folder / "medical_multimodel_evaluation_data.json").write_bytes(content)
    with pytest.raises(ValueError, match="medical_multimodel_evaluation_data.json is not valid JSON"):
        load_huatuo(folder)
