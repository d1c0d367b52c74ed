"""OmniMedVQA (`medvlm_trl.data.omnimedvqa`) on a fixture in the release's layout: QA JSON files per source,
`Images/<source>/`, `modality_type`, two-option sources, the record that spells its key `modality`, the archive."""

import json
import shutil

import pytest
from own_data import OMNI_MODALITIES, write_omnimedvqa

from medvlm_trl.data.images import load_image
from medvlm_trl.data.omnimedvqa import load_omnimedvqa
from medvlm_trl.data.registry import load_rows
from medvlm_trl.data.schema import BadRowError, SkipReport


def test_rows_from_the_release_layout(tmp_path):
    root = write_omnimedvqa(tmp_path)
    rows = load_omnimedvqa(root)
    assert len(rows) == 4 * len(OMNI_MODALITIES)
    by_source = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    assert sorted(by_source) == sorted(OMNI_MODALITIES)
    assert {r["modality"] for r in by_source["Chest CT Scan"]} == {"CT"}  # incl. the record keyed `modality`
    assert {r["modality"] for r in by_source["BraTS"]} == {"MRI"}
    assert {r["modality"] for r in by_source["ACRIMA"]} == {"Fundus Photography"}
    fundus = by_source["ACRIMA"][1]
    assert fundus["options"] == ["Glaucoma", "Normal"] and fundus["answer"] == "B"  # gt_answer is the option text
    assert fundus["id"] == "ACRIMA_0001" and fundus["image_file"] == "Images/ACRIMA/ACRIMA_1.png"
    assert load_image(fundus["image"]).size == (48, 48)


def test_parent_folder_archive_and_registry_name(tmp_path):
    root = write_omnimedvqa(tmp_path / "unpacked")
    assert len(load_rows("omnimedvqa", "test", data_dir=str(tmp_path / "unpacked"))) == 12
    archive = shutil.make_archive(str(tmp_path / "dl" / "OmniMedVQA"), "zip", root.parent, "OmniMedVQA")
    rows = load_omnimedvqa(tmp_path / "dl")  # a folder holding OmniMedVQA.zip: unpacked once
    assert len(rows) == 12 and (tmp_path / "dl" / "OmniMedVQA" / "QA_information").is_dir()
    assert archive.endswith("OmniMedVQA.zip")


def test_one_split_and_bad_rows(tmp_path):
    root = write_omnimedvqa(tmp_path)
    with pytest.raises(ValueError, match="one split, 'test'.*make-split dataset --dataset_name omnimedvqa"):
        load_rows("omnimedvqa", "train", data_dir=str(root))
    path = root / "QA_information" / "Open-access" / "BraTS.json"
    records = json.loads(path.read_text())
    records[1]["gt_answer"] = "Kidney"
    (root / records[2]["image_path"]).unlink()
    path.write_text(json.dumps(records))
    with pytest.raises(BadRowError, match="row 'BraTS_0001': answer_not_in_options"):
        load_omnimedvqa(root)
    report = SkipReport()
    assert len(load_omnimedvqa(root, skip_bad_rows=True, report=report)) == 10
    assert dict(report.counts) == {"answer_not_in_options": 1, "missing_image": 1}


def test_not_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="no QA_information/ folder"):
        load_omnimedvqa(tmp_path)
    root = write_omnimedvqa(tmp_path)
    with pytest.raises(ValueError, match="access must be one of"):
        load_omnimedvqa(root, access="public")
    with pytest.raises(FileNotFoundError, match="no JSON files under Restricted-access"):
        load_omnimedvqa(root, access="restricted")


def test_make_split_by_modality_and_eval_rows_from_the_manifest(tmp_path):
    from medvlm_trl.data.manifest import load_manifest
    from medvlm_trl.data.splits import main as split_main
    from medvlm_trl.eval.run import load_eval_rows

    root = write_omnimedvqa(tmp_path)
    out = tmp_path / "splits"
    argv = ["dataset", "--dataset_name", "omnimedvqa", "--data_dir", str(root), "--test_size", "1", "--by_modality"]
    assert split_main([*argv, "--out-dir", str(out)]) == 0
    test = load_manifest(out / "test.json")
    assert sorted(r["modality"] for r in test.rows) == ["CT", "Fundus Photography", "MRI"]
    assert test.dataset == "omnimedvqa" and test.settings["source_split"] == "test"
    train = load_rows("omnimedvqa", "train", data_dir=str(root), split_file=out / "train.json")
    assert len(train) == 9 and not {r["id"] for r in train} & set(test.ids())
    assert [r["id"] for r in load_eval_rows(str(out / "test.json"))] == test.ids()
