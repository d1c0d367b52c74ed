"""Your own data through `datasets` (`medvlm_trl.data.generic`): column mappings, answers as letters or texts,
images as paths, bytes or `datasets` Images, the row checks and skip counts every loader shares, and the registry,
make-split and eval reading the same rows."""

import base64
import json

import pytest
from own_data import JSONL_COLUMNS, png_bytes, question_rows, write_csv_dataset, write_jsonl_bytes_dataset

from medvlm_trl.data.generic import answer_letter, normalize_modality, parse_columns, resolve_columns
from medvlm_trl.data.images import load_image
from medvlm_trl.data.registry import load_rows
from medvlm_trl.data.schema import BadRowError, SkipReport

CSV_COLUMNS = {"id": "qid"}


def csv_rows(tmp_path, edit=None, **kw):
    path = write_csv_dataset(tmp_path / "my_data", edit=edit)
    return load_rows("csv", "train", data_files=[str(path)], dataset_columns=kw.pop("columns", CSV_COLUMNS), **kw)


def test_csv_with_an_image_folder_becomes_contract_rows(tmp_path):
    rows = csv_rows(tmp_path)
    expected = question_rows()
    assert [r["id"] for r in rows] == [e["qid"] for e in expected]
    for row, want in zip(rows, expected):
        assert row["options"] == want["options"]  # empty trailing option cells dropped (3-option rows)
        letter = want["answer"] if len(want["answer"]) == 1 else "ABCD"[want["options"].index(want["answer"])]
        assert row["answer"] == letter
        assert row["modality"] == want["modality"] and row["source"] == "questions"
        assert row["image_file"].startswith("images/scan_")
        assert load_image(row["image"]).size == (48, 48)  # relative to the CSV's folder


def test_option_columns_a_to_d_are_found_without_a_mapping_and_ids_default_to_content_ids(tmp_path):
    rows = csv_rows(tmp_path, columns=None)
    assert rows[1]["options"] == ["Liver", "Brain", "Lung", "Heart"]
    assert rows[0]["id"].startswith("questions:images/scan_00.png:")
    assert len({r["id"] for r in rows}) == len(rows)


def test_jsonl_with_images_as_bytes(tmp_path):
    path = write_jsonl_bytes_dataset(tmp_path / "vqa.jsonl")
    rows = load_rows("json", "train", data_files=[str(path)], dataset_columns=JSONL_COLUMNS)
    assert len(rows) == 12 and isinstance(rows[0]["image"], bytes)
    assert rows[0]["image"] == png_bytes(100)
    assert "image_file" not in rows[0]
    assert rows[3]["id"].startswith("vqa:sha256-")  # content id over the image bytes' hash
    assert [r["modality"] for r in rows[:3]] == ["CT", "MRI", "X-ray"]
    assert rows[1]["answer"] == "B"  # the option's text, as its letter


def test_parquet_with_a_datasets_image_column_and_raw_bytes(tmp_path):
    from datasets import Dataset, Features, Image, Sequence, Value

    features = Features(
        {"image": Image(), "blob": Value("binary"), "question": Value("string"), "options": Sequence(Value("string"))}
    )
    features["answer"] = Value("string")
    data = {
        "image": [{"bytes": png_bytes(i), "path": None} for i in range(3)],
        "blob": [png_bytes(10 + i) for i in range(3)],
        "question": [f"q{i}?" for i in range(3)],
        "options": [["CT", "MRI"]] * 3,
        "answer": ["A", "b", "MRI"],
    }
    Dataset.from_dict(data, features=features).to_parquet(str(tmp_path / "d.parquet"))
    rows = load_rows("parquet", "train", data_files=[str(tmp_path / "d.parquet")])
    assert [r["answer"] for r in rows] == ["A", "B", "B"]
    assert rows[0]["image"] == png_bytes(0)  # the Image column read lazily, as its bytes
    blob = load_rows("parquet", "train", data_files=[str(tmp_path / "d.parquet")], dataset_columns={"image": "blob"})
    assert blob[2]["image"] == png_bytes(12)


def test_imagefolder_with_metadata(tmp_path):
    from own_data import image

    folder = tmp_path / "imgs"
    folder.mkdir()
    lines = []
    for i in range(3):
        image(i).save(folder / f"x{i}.png")
        lines.append({"file_name": f"x{i}.png", "question": "Which?", "options": ["CT", "MRI", "US"], "answer": "C"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows = load_rows("imagefolder", "train", data_dir=str(folder))
    assert len(rows) == 3 and all(r["answer"] == "C" for r in rows)
    assert sorted(r["image_file"] for r in rows) == ["x0.png", "x1.png", "x2.png"]
    assert load_image(rows[0]["image"]).size == (48, 48)


def test_a_local_folder_as_dataset_name(tmp_path):
    write_jsonl_bytes_dataset(tmp_path / "folder" / "part.jsonl")
    rows = load_rows(str(tmp_path / "folder"), "train", dataset_columns=JSONL_COLUMNS)
    assert len(rows) == 12 and rows[0]["source"] == "folder" and load_image(rows[0]["image"]).size == (48, 48)


def test_unknown_mapping_column_names_the_key_and_the_columns(tmp_path):
    with pytest.raises(ValueError) as err:
        csv_rows(tmp_path, columns={"question": "Question"})
    message = str(err.value)
    assert "dataset_columns['question'] is 'Question'" in message and "'qid', 'image', 'question'" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match=r"dataset_columns\['options'\] names column\(s\) \['E'\]"):
        csv_rows(tmp_path, columns={"options": ["A", "B", "E"]})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['questoin'\]"):
        parse_columns({"questoin": "q"})
    with pytest.raises(ValueError, match="JSON object"):
        parse_columns("{question: q")


def test_missing_default_column_says_which_key_to_set():
    with pytest.raises(ValueError, match=r"the data has no 'answer' column \(set dataset_columns\['answer'\]\)"):
        resolve_columns({}, ["question", "options", "image"])


@pytest.mark.parametrize(
    ("value", "options", "letter"),
    [
        ("B", ["x", "y"], "B"),
        ("b", ["x", "y"], "B"),
        (" y ", ["x", "y"], "B"),
        ("Y", ["x", "y"], "B"),
        (2, ["1", "2"], "B"),
    ],
)
def test_answer_as_letter_or_option_text(value, options, letter):
    assert answer_letter(value, options, "r") == letter


@pytest.mark.parametrize(
    ("value", "options", "reason"),
    [
        ("E", ["x", "y"], "answer_not_in_options"),
        ("z", ["x", "y"], "answer_not_in_options"),
        (None, ["x", "y"], "answer_not_in_options"),
        ("B", ["B", "A"], "ambiguous_answer"),  # letter B, but also option A's text
        ("x", ["x", "X"], "ambiguous_answer"),
    ],
)
def test_bad_answers_are_named(value, options, reason):
    with pytest.raises(BadRowError) as err:
        answer_letter(value, options, "r7")
    assert err.value.reason == reason and str(err.value).startswith("row 'r7': ")


def test_modality_names_are_normalised():
    assert [normalize_modality(m) for m in ("MRI", "mr", "CT(Computed Tomography)", "X-Ray", "xray")] == [
        "MRI",
        "MRI",
        "CT",
        "X-ray",
        "X-ray",
    ]
    assert normalize_modality("Microscopy Images") == "Microscopy Images"


def _spoil(records):
    records[2]["answer"] = "E"  # letter beyond the options
    records[4]["B"] = ""  # an empty option before filled ones
    records[5]["image"] = "images/nowhere.png"
    records[6]["qid"] = records[7]["qid"]  # a duplicate id
    records[8]["question"] = ""


def test_bad_rows_raise_the_built_in_loaders_errors_or_are_counted(tmp_path):
    with pytest.raises(BadRowError) as err:
        csv_rows(tmp_path, edit=_spoil)
    assert str(err.value).startswith("row 'q02': answer_not_in_options")
    report = SkipReport()
    rows = csv_rows(tmp_path, edit=_spoil, skip_bad_rows=True, report=report)
    assert len(rows) == 12 - 5
    assert dict(report.counts) == {
        "answer_not_in_options": 1,
        "empty_option": 1,
        "missing_image": 1,
        "duplicate_id": 1,
        "empty_question": 1,
    }
    assert report.examples["missing_image"] == ["q05"]


def test_bad_image_bytes_are_named_when_decoded(tmp_path):
    def spoil(records):
        records[1]["picture"] = "data:image/png;base64," + base64.b64encode(b"not a png").decode()
        records[2]["picture"] = "data:image/png;base64,@@@"

    path = write_jsonl_bytes_dataset(tmp_path / "vqa.jsonl", edit=spoil)
    report = SkipReport()
    kw = dict(data_files=[str(path)], dataset_columns=JSONL_COLUMNS, skip_bad_rows=True, report=report)
    rows = load_rows("json", "train", check_images="decode", **kw)
    assert len(rows) == 10 and dict(report.counts) == {"unreadable_image": 2}


def test_the_same_fault_gets_the_same_error_as_the_huatuo_loader(tmp_path):
    from own_data import image

    from medvlm_trl.data.huatuo import load_huatuo

    (tmp_path / "h" / "images").mkdir(parents=True)
    image(1).save(tmp_path / "h" / "images" / "a.png")
    record = {"image": ["images/a.png"], "question": "Q?", "options": ["x", "x"], "answer": "x", "dataset": "s"}
    (tmp_path / "h" / "data.json").write_text(json.dumps([record]))
    with pytest.raises(BadRowError) as built_in:
        load_huatuo(tmp_path / "h" / "data.json")
    (tmp_path / "h" / "data.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(BadRowError) as ours:
        load_rows("json", "train", data_files=[str(tmp_path / "h" / "data.jsonl")])
    assert built_in.value.reason == ours.value.reason == "ambiguous_answer"


def test_unknown_dataset_name_and_options_of_named_loaders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'huato'.*csv, json"):
        load_rows("huato", "train")
    with pytest.raises(ValueError, match="set data_files"):
        load_rows("csv", "train")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_rows("csv", "train", data_files=[str(tmp_path / "none.csv")])
    with pytest.raises(ValueError, match=r"has split\(s\) \['train'\], not 'test'.*make-split dataset"):
        csv_rows(tmp_path)  # builds the files
        load_rows("csv", "test", data_files=[str(tmp_path / "my_data" / "questions.csv")])


def test_recipe_keys_parse_and_are_refused_for_named_loaders():
    from medvlm_trl.configs import MedVLMScriptArguments
    from medvlm_trl.data.generic import script_data_kwargs

    args = MedVLMScriptArguments(dataset_name="csv", data_files="a.csv", dataset_columns='{"id": "qid"}')
    assert args.data_files == ["a.csv"] and args.dataset_columns == {"id": "qid"}
    assert script_data_kwargs(args) == {"data_files": ["a.csv"], "dataset_columns": {"id": "qid"}}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['qestion'\]"):
        MedVLMScriptArguments(dataset_name="csv", dataset_columns={"qestion": "q"})
    with pytest.raises(ValueError, match="data_files: not an option of dataset 'huatuo'"):
        script_data_kwargs(MedVLMScriptArguments(dataset_name="huatuo", data_files=["a.csv"]))


def test_make_split_by_modality_then_every_command_reads_the_manifests(tmp_path, capsys):
    from medvlm_trl.data.audit import main as audit_main
    from medvlm_trl.data.manifest import load_manifest
    from medvlm_trl.data.splits import main as split_main
    from medvlm_trl.eval.run import load_eval_rows

    csv = write_csv_dataset(tmp_path / "my_data", n=24)
    out = tmp_path / "splits"
    argv = ["dataset", "--dataset_name", "csv", "--data_files", str(csv), "--dataset_columns", '{"id": "qid"}']
    assert split_main([*argv, "--test_size", "0.25", "--by_modality", "--out-dir", str(out)]) == 0
    train, test = load_manifest(out / "train.json"), load_manifest(out / "test.json")
    assert sorted(r["modality"] for r in test.rows) == ["CT"] * 2 + ["MRI"] * 2 + ["X-ray"] * 2
    assert len(train.rows) == 18 and not {r["id"] for r in train.rows} & {r["id"] for r in test.rows}
    assert test.settings["data"]["dataset_columns"] == {"id": "qid"} and test.settings["source_split"] == "train"
    # Seeded: the same seed draws the same split, another seed another one.
    assert split_main([*argv, "--test_size", "0.25", "--by_modality", "--out-dir", str(tmp_path / "again")]) == 0
    assert load_manifest(tmp_path / "again" / "test.json").ids() == test.ids()
    assert split_main([*argv, "--test_size", "6", "--seed", "1", "--out-dir", str(tmp_path / "s1")]) == 0
    assert load_manifest(tmp_path / "s1" / "test.json").ids() != test.ids()
    assert audit_main([str(out / "train.json"), str(out / "test.json")]) == 0
    # Training reads the split with the recipe's mapping; eval reads it from what the manifest recorded.
    kw = dict(data_files=[str(csv)], dataset_columns={"id": "qid"})
    assert [r["id"] for r in load_rows("csv", "train", split_file=out / "train.json", **kw)] == train.ids()
    assert [r["id"] for r in load_eval_rows(str(out / "test.json"))] == test.ids()
    with pytest.raises(ValueError, match="was made with dataset_columns"):
        load_rows("csv", "train", split_file=out / "train.json", data_files=[str(csv)], dataset_columns={"id": "id"})
    # A test manifest never loads as training rows.
    with pytest.raises(ValueError, match="holds the 'test' split"):
        load_rows("csv", "train", split_file=out / "test.json", **kw)
    capsys.readouterr()
    assert split_main([*argv, "--test_size", "12", "--by_modality", "--out-dir", str(tmp_path / "x")]) == 2
    assert "leaving none to train on" in capsys.readouterr().err


def test_make_split_reads_the_data_keys_of_a_recipe(tmp_path):
    import yaml

    from medvlm_trl.data.manifest import load_manifest
    from medvlm_trl.data.splits import main as split_main

    csv = write_csv_dataset(tmp_path / "my_data")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"dataset_name": "csv", "data_files": str(csv), "learning_rate": 1e-6}))
    assert split_main(["dataset", "--config", str(recipe), "--test_size", "3", "--out-dir", str(tmp_path / "s")]) == 0
    assert len(load_manifest(tmp_path / "s" / "test.json").rows) == 3


def test_leakage_audit_before_training_sees_a_question_on_a_test_image(tmp_path):
    from medvlm_trl.data.audit import LeakageError, assert_no_leakage
    from medvlm_trl.data.manifest import manifest_from_rows
    from medvlm_trl.data.splits import main as split_main

    def twin(records):
        records.append({**records[0], "qid": "twin", "question": "Another question on the same image?"})

    csv = write_csv_dataset(tmp_path / "d", edit=twin)
    rows = load_rows("csv", "train", data_files=[str(csv)], dataset_columns={"id": "qid"})
    test = manifest_from_rows([r for r in rows if r["id"] == "q00"], dataset="csv", split="test")
    test.save(tmp_path / "test.json")
    with pytest.raises(LeakageError) as err:
        assert_no_leakage([r for r in rows if r["id"] != "q00"], [tmp_path / "test.json"])
    assert "image_file" in err.value.report.summary() and "twin" in err.value.report.summary()
    # make-split never puts the twin on the other side of its test row.
    out = tmp_path / "s"
    argv = ["dataset", "--dataset_name", "csv", "--data_files", str(csv), "--dataset_columns", '{"id": "qid"}']
    for seed in range(4):
        assert split_main([*argv, "--test_size", "4", "--seed", str(seed), "--out-dir", str(out)]) == 0
        sides = [{r["id"] for r in json.loads((out / f"{s}.json").read_text())["rows"]} for s in ("train", "test")]
        assert not ({"q00", "twin"} & sides[0] and {"q00", "twin"} & sides[1])


def test_a_hub_id_that_cannot_be_fetched_is_one_line(tmp_path):
    with pytest.raises(ValueError) as err:
        load_rows("someone/no-such-vqa-set", "train")  # the suite runs offline (HF_DATASETS_OFFLINE=1)
    assert str(err.value).startswith("datasets could not load 'someone/no-such-vqa-set' (") and "\n" not in str(
        err.value
    )


def test_rows_from_a_dataset_in_hand():
    from datasets import Dataset

    from medvlm_trl.data.generic import rows_from_dataset

    ds = Dataset.from_dict(
        {
            "q": ["Which?", "Which?"],
            "opts": [["CT", "MRI"], ["CT", "MRI"]],
            "a": ["MRI", "C"],
            "img": [png_bytes(1)] * 2,
        }
    )
    columns = {"question": "q", "options": "opts", "answer": "a", "image": "img"}
    report = SkipReport()
    rows = rows_from_dataset(ds, dataset_columns=columns, source="mine", skip_bad_rows=True, report=report)
    assert [r["answer"] for r in rows] == ["B"] and rows[0]["source"] == "mine"
    assert dict(report.counts) == {"answer_not_in_options": 1}
