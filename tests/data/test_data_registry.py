"""`load_rows`: one entry point from a recipe's dataset name to contract rows, and its refusals."""

from __future__ import annotations

import pytest
from test_data_layouts import huatuo_record, pmc_record, write_huatuo, write_pmc_vqa

from medvlm_trl.data.huatuo import load_huatuo
from medvlm_trl.data.manifest import manifest_from_rows
from medvlm_trl.data.registry import load_rows
from medvlm_trl.data.sample import load_sample
from medvlm_trl.data.schema import SkipReport


def test_sample_dispatches_to_the_sample_set():
    for split in ("train", "test"):
        assert [r["id"] for r in load_rows("sample", split)] == [r["id"] for r in load_sample(split)]
    ct = load_rows("sample", "test", modality="CT")
    assert ct and {r["modality"] for r in ct} == {"CT"}


def test_huatuo_loads_its_one_split_and_filters_by_modality(tmp_path):
    folder = write_huatuo(tmp_path, [huatuo_record("a", "MRI"), huatuo_record("b", "CT")])
    assert len(load_rows("huatuo", "test", data_dir=folder)) == 2
    assert [r["modality"] for r in load_rows("huatuo", "test", data_dir=folder, modality="CT")] == ["CT"]
    with pytest.raises(ValueError, match="make-split medvlm-r1"):
        load_rows("huatuo", "train", data_dir=folder)


def test_bad_rows_are_counted_in_the_callers_report(tmp_path):
    folder = write_huatuo(tmp_path, [huatuo_record("a"), {**huatuo_record("b"), "answer": "nope"}])
    report = SkipReport()
    rows = load_rows("huatuo", "test", data_dir=folder, skip_bad_rows=True, report=report)
    assert len(rows) == 1 and dict(report.counts) == {"answer_not_in_options": 1}


def test_a_split_file_must_be_of_the_dataset_and_split_asked_for(tmp_path):
    folder = write_huatuo(tmp_path / "h", [huatuo_record("a"), huatuo_record("b")])
    rows = load_huatuo(folder)
    path = manifest_from_rows(rows[:1], dataset="huatuo", split="train").save(tmp_path / "train.json")
    assert [r["id"] for r in load_rows("huatuo", "train", data_dir=folder, split_file=path)] == [rows[0]["id"]]
    with pytest.raises(ValueError, match="holds the 'train' split, not 'test'"):
        load_rows("huatuo", "test", data_dir=folder, split_file=path)
    write_pmc_vqa(tmp_path / "p", {"train": [pmc_record("1")]})
    with pytest.raises(ValueError, match="a split of 'huatuo', not 'pmc_vqa'"):
        load_rows("pmc_vqa", "train", data_dir=tmp_path / "p", split_file=path)


def test_a_split_file_naming_rows_the_data_lacks_is_refused(tmp_path):
    rows = load_huatuo(write_huatuo(tmp_path / "full", [huatuo_record("a"), huatuo_record("b")]))
    path = manifest_from_rows(rows, dataset="huatuo", split="test").save(tmp_path / "test.json")
    smaller = write_huatuo(tmp_path / "smaller", [huatuo_record("a")])
    with pytest.raises(ValueError, match="1 of the 2 ids in split manifest test.json are not in the loaded data"):
        load_rows("huatuo", "test", data_dir=smaller, split_file=path)


def test_unknown_names_options_and_training_subsets_are_refused(tmp_path):
    write_pmc_vqa(tmp_path, {"train": [pmc_record("1"), pmc_record("2")], "test": [pmc_record("3")]})
    with pytest.raises(ValueError, match="unknown dataset 'vqa_rad'"):
        load_rows("vqa_rad", "train")
    with pytest.raises(TypeError, match="max_pixels"):
        load_rows("pmc_vqa", "train", data_dir=tmp_path, max_pixels=10)
    with pytest.raises(ValueError, match="training subset must be drawn clean"):
        load_rows("pmc_vqa", "train", data_dir=tmp_path, subset_size=1)
    assert len(load_rows("pmc_vqa", "train", data_dir=tmp_path)) == 2
