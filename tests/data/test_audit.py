"""The leakage audit finds every planted overlap kind, passes a clean pair, and says what it could not check."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image
from test_data_layouts import REAL_MANIFEST, huatuo_record, make_image, needs_real_manifest, save_image, write_huatuo

from medvlm_trl.data.audit import CRITERIA, LeakageError, assert_no_leakage, audit, main
from medvlm_trl.data.huatuo import load_huatuo
from medvlm_trl.data.manifest import load_manifest, manifest_from_rows


def _manifest(folder, records, split, **kw):
    rows = load_huatuo(write_huatuo(folder, records, **kw))
    return manifest_from_rows(rows, dataset="huatuo", split=split, name=folder.name)


def _plain_row(folder, row_id, key):
    """A contract row as a loader with its own ids (the sample set) gives it."""
    return {
        "id": row_id,
        "image": str(save_image(folder, f"{key}.png")),
        "question": f"Question about {key}?",
        "options": ["yes", "no"],
        "answer": "A",
        "modality": "MRI",
        "source": "sample",
    }


def planted(kind: str, tmp_path):
    """A (train, test) manifest pair that overlaps by exactly one criterion, or by none for `clean`."""
    test_records = [huatuo_record("t1", "MRI"), huatuo_record("t2", "CT")]
    test = _manifest(tmp_path / "test", test_records, "test")
    train_dir = tmp_path / "train"
    extra = {
        "clean": huatuo_record("c1", "MRI"),
        # Same relative file name as a test row, different pixels (another copy of the data) and question.
        "image_file": huatuo_record("t1", "MRI", image="images/t1.png", question="Another question on t1?"),
        # The test image re-saved as BMP under another name: only the decoded pixels match.
        "pixel": huatuo_record("copy", "MRI", image="images/renamed_copy.bmp"),
        # The test image resized by 5%: a near-duplicate.
        "near_image": huatuo_record("small", "MRI", image="images/resized_copy.png"),
        # A different image with the same question and options as a test row: the same item, the same answer.
        "question": {**test_records[1], "image": ["images/other.png"], "dataset": "OmniMedVQA"},
    }
    if kind == "id":
        train_rows = [_plain_row(train_dir, "case-7", "a")]
        test = manifest_from_rows([_plain_row(tmp_path / "t", "case-7", "b")], dataset="sample", split="test")
        return manifest_from_rows(train_rows, dataset="sample", split="train"), test
    if kind == "image_file":
        save_image(train_dir, "images/t1.png", key="a different picture")
    t1 = Image.open(tmp_path / "test" / "images" / "t1.png")
    if kind == "pixel":
        save_image(train_dir, "images/renamed_copy.bmp", image=t1)
    if kind == "near_image":
        save_image(train_dir, "images/resized_copy.png", image=t1.resize((38, 30), Image.Resampling.BICUBIC))
    records = [huatuo_record("c0", "MRI"), extra[kind]]
    return _manifest(train_dir, records, "train"), test


@pytest.mark.parametrize("kind", ["id", "image_file", "pixel", "near_image", "question", "clean"])
def test_each_planted_overlap_is_found_and_nothing_else(tmp_path, kind):
    train, test = planted(kind, tmp_path)
    report = audit(train, [test])
    assert report.complete
    if kind == "clean":
        assert report.overlaps == [] and "no overlaps found" in report.summary()
        return
    assert dict(report.counts()) == {kind: 1}
    (overlap,) = report.overlaps
    assert overlap.test_manifest == test.label and overlap.modality == ("CT" if kind == "question" else "MRI")
    assert bool(report.exact) == (kind != "near_image")
    assert f"{kind}: train {overlap.train_id} ~ test {overlap.test_id}" in report.summary()


def test_counts_per_modality_and_several_test_manifests(tmp_path):
    train, test = planted("question", tmp_path)
    other = _manifest(tmp_path / "other", [huatuo_record("t2", "CT")], "test")
    report = audit(train, [test, other])
    assert report.counts()["question"] == 2
    assert report.counts_by_modality() == {"question": {"CT": 2}}
    assert {o.test_manifest for o in report.overlaps} == {test.label, other.label}


def test_criteria_can_be_chosen_and_unknown_ones_are_refused(tmp_path):
    train, test = planted("pixel", tmp_path)
    assert audit(train, [test], criteria=("id", "question")).overlaps == []
    with pytest.raises(ValueError, match="unknown audit criteria"):
        audit(train, [test], criteria=("id", "colour"))


def test_near_threshold_is_a_bound_in_bits(tmp_path):
    train, test = planted("near_image", tmp_path)
    (overlap,) = audit(train, [test]).overlaps
    bits = int(overlap.detail.split()[0])
    assert audit(train, [test], near_threshold=bits).overlaps
    assert bits == 0 or not audit(train, [test], near_threshold=bits - 1).overlaps


def test_the_cli_exits_non_zero_on_exact_overlaps_only(tmp_path, capsys):
    for kind, expected in [("pixel", 1), ("near_image", 0), ("clean", 0)]:
        train, test = planted(kind, tmp_path / kind)
        a, b = train.save(tmp_path / kind / "train.json"), test.save(tmp_path / kind / "test.json")
        assert main([str(a), str(b)]) == expected, kind
    assert main([str(a), str(b), "--fail-on-near"]) == 0
    near = tmp_path / "near_image"
    assert main([str(near / "train.json"), str(near / "test.json"), "--fail-on-near"]) == 1
    out = tmp_path / "report.json"
    main([str(near / "train.json"), str(near / "test.json"), "--json", str(out)])
    assert json.loads(out.read_text())["counts"] == {"near_image": 1}
    assert "near_image" in capsys.readouterr().out


def test_assert_no_leakage_takes_rows_or_manifests(tmp_path, caplog):
    train, test = planted("pixel", tmp_path)
    test_path = test.save(tmp_path / "test.json")
    rows = load_huatuo(tmp_path / "train")
    with pytest.raises(LeakageError) as err:
        assert_no_leakage(rows, [test_path])
    assert err.value.report.counts() == {"pixel": 1} and "pixel" in str(err.value)
    report = assert_no_leakage(train, str(test_path), allow_overlap=True)
    assert report.counts() == {"pixel": 1} and "training despite overlaps" in caplog.text
    clean_rows = [r for r in rows if "c0" in r["id"]]
    assert assert_no_leakage(clean_rows, [test_path]).overlaps == []


@needs_real_manifest
def test_the_real_test_manifest_audited_against_itself(capsys):
    manifest = load_manifest(REAL_MANIFEST)
    assert len(manifest.rows) == 900 and manifest.unhashed() == 900 and manifest.split == "test"
    report = audit(manifest, [manifest])
    assert report.counts()["id"] == 900 and report.counts()["image_file"] == 900
    assert report.counts_by_modality()["id"] == {"MRI": 300, "CT": 300, "X-ray": 300}
    # Its images are not published: the pixel and near-duplicate checks could not run, and the report says so.
    assert not report.complete and "NOT CHECKED: 900 rows" in report.summary()
    assert main([str(REAL_MANIFEST), str(REAL_MANIFEST)]) == 1


@needs_real_manifest
def test_an_incomplete_audit_fails_unless_accepted_or_the_images_are_supplied(tmp_path, caplog):
    train, _ = planted("clean", tmp_path)
    train_path = train.save(tmp_path / "train.json")
    assert main([str(train_path), str(REAL_MANIFEST)]) == 3
    assert main([str(train_path), str(REAL_MANIFEST), "--allow-incomplete"]) == 0
    images = tmp_path / "huatuo"
    for row in json.loads(REAL_MANIFEST.read_text()):
        save_image(images, row["image"][0])
    assert main([str(train_path), str(REAL_MANIFEST), "--image-root", str(images)]) == 0
    report = assert_no_leakage(train_path, [REAL_MANIFEST])
    assert not report.complete and "leakage audit incomplete" in caplog.text


def test_criteria_table_matches_the_docs():
    from medvlm_trl.data import audit as module

    for criterion in CRITERIA:
        assert f"`{criterion}`" in module.__doc__


def test_flat_images_have_no_perceptual_hash():
    from medvlm_trl.data.manifest import dhash

    assert dhash(Image.new("RGB", (20, 20), (9, 9, 9))) is None and dhash(make_image("x")) is not None


def test_the_cli_exits_2_with_one_line_on_bad_arguments_never_1(tmp_path, capsys):
    """Exit 1 means "overlaps": a missing, corrupt or unknown manifest or criterion must not read as one."""
    train, test = planted("clean", tmp_path)
    a, b = train.save(tmp_path / "train.json"), test.save(tmp_path / "test.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": ')
    cases = [
        ([str(a), str(tmp_path / "absent.json")], "split manifest not found"),
        ([str(a), str(broken)], "broken.json is not valid JSON"),
        ([str(a), str(b), "--criteria", "id,colour"], "unknown audit criteria ['colour']"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("medvlm-trl audit-split: error: ") and err.count("\n") == 1 and message in err
    assert main([str(a), str(b)]) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dataset": None}, "'dataset' must be a name"),
        ({"split": 3}, "'split' must be a name"),
        ({"rows": {"a": 1}}, "'rows' must be a list"),
        ({"rows": ["a"]}, "row #0 has no id"),
        ({"rows": [{"source": "x"}]}, "row #0 has no id"),
        ({"rows": [{"id": "a"}, {"id": "a"}]}, "row #1 repeats the id 'a'"),
        ({"settings": [1]}, "'settings' must be a mapping"),
    ],
)
def test_a_malformed_manifest_is_a_value_error_naming_the_file(tmp_path, change, message):
    """Not a KeyError or TypeError (audit-split would exit 1, "overlaps"); a repeated id would be scored twice."""
    data = {**planted("clean", tmp_path)[1].to_dict(), **change}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"m.json: .*{re.escape(message)}"):
        load_manifest(path).ids()
    assert main([str(path), str(path)]) == 2


def test_a_manifest_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_bytes(b'["\xff"]')
    with pytest.raises(ValueError, match="m.json is not valid JSON"):
        load_manifest(path)
