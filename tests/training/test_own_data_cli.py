"""Your own data through every command of the CLI: a CSV beside an image folder and a JSONL with images as bytes are
split (`make-split dataset`, by modality), audited, trained on with GRPO and SFT (the CSV also DPO) for two steps (the leakage audit
against the test manifest runs first) and every trained model is evaluated per modality; bad rows end a command with
the one-line errors of the built-in loaders, or are counted with `skip_bad_rows`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_recipe
from own_data import JSONL_COLUMNS, MODALITIES, write_csv_dataset, write_jsonl_bytes_dataset

from medvlm_trl.tiny import TINY_MAX_PIXELS

BIN = Path(sys.executable).parent

GRPO = {
    "dtype": "float32",
    "prompt_template": "r1",
    "reward_funcs": ["format", "accuracy"],
    "loss_preset": "grpo",
    "beta": 0.04,
    "num_generations": 2,
    "max_completion_length": 8,
    "use_vllm": False,
}
SFT = {"dtype": "float32", "prompt_template": "simple", "completion_only_loss": True, "max_length": None}
DPO = {"dtype": "float32", "prompt_template": "simple", "beta": 0.1, "max_length": None}
METHODS = {"grpo": GRPO, "sft": SFT, "dpo": DPO}
COMMON = {
    "max_pixels": 12544,
    "per_device_train_batch_size": 2,
    "max_steps": 2,
    "bf16": False,
    "gradient_checkpointing": False,
    "save_strategy": "no",
    "report_to": "none",
    "logging_steps": 1,
}


def cli(tmp_path, *args, ok=True):
    result = subprocess.run(
        [str(BIN / "medvlm-trl"), *map(str, args)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
    )
    if ok:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def recipe(tmp_path, name, data, method, **extra):
    return write_recipe(tmp_path, {**METHODS[method], **COMMON, **data, **extra}, f"{name}.yaml")


def csv_data(tmp_path):
    path = write_csv_dataset(tmp_path / "my_data", n=12)
    return {"dataset_name": "csv", "data_files": [str(path)], "dataset_columns": {"id": "qid"}}


def jsonl_data(tmp_path):
    path = write_jsonl_bytes_dataset(tmp_path / "vqa.jsonl", n=12)
    return {"dataset_name": "json", "data_files": [str(path)], "dataset_columns": JSONL_COLUMNS}


@pytest.mark.slow
@pytest.mark.parametrize("make_data", [csv_data, jsonl_data], ids=["csv_image_folder", "jsonl_image_bytes"])
def test_split_train_grpo_and_sft_and_evaluate_each(make_data, tiny_vlm, tmp_path):
    data = make_data(tmp_path)
    splits = tmp_path / "splits"
    cli(tmp_path, "make-split", "dataset", "--config", recipe(tmp_path, "data", data, "grpo"), "--test_size", "1",
        "--by_modality", "--out-dir", splits)  # fmt: skip
    cli(tmp_path, "audit-split", splits / "train.json", splits / "test.json")
    split = {"split_file": str(splits / "train.json"), "test_manifests": [str(splits / "test.json")]}
    # DPO shares SFT's data path (`train_baseline`); trained once, on the CSV, to keep the test short.
    for method in ("grpo", "sft", "dpo") if data["dataset_name"] == "csv" else ("grpo", "sft"):
        out = tmp_path / method
        path = recipe(tmp_path, method, {**data, **split}, method, model_name_or_path=tiny_vlm, output_dir=str(out))
        cli(tmp_path, method, "--config", path)
        assert (out / "model.safetensors").is_file()
        card = (out / "README.md").read_text()
        assert f"dataset: `{data['dataset_name']} ({Path(data['data_files'][0]).name})`, split `train`" in card
        run = json.loads((out / "medvlm_run.json").read_text())
        assert (
            run["split"]["dataset_columns"] == data["dataset_columns"] and run["split"]["split_file"]["num_rows"] == 9
        )
        prompt = "r1" if method == "grpo" else "simple"
        evaluated = tmp_path / f"eval_{method}"
        result = cli(tmp_path, "eval", "--model", out, "--split", splits / "test.json", "--prompt", prompt, "--out",
                     evaluated, "--max_new_tokens", "8", "--max_pixels", TINY_MAX_PIXELS, "--progress", "false")  # fmt: skip
        summary = json.loads((evaluated / "summary.json").read_text())
        assert sorted(summary["modalities"]) == sorted(MODALITIES)
        assert all(group["n"] == 1 for group in summary["modalities"].values()) and summary["overall"]["n"] == 3
        for modality in MODALITIES:
            assert modality in result.stdout  # the per-modality table


def _spoil(records):
    records[2]["answer"] = "E"


@pytest.mark.slow
def test_bad_rows_end_each_command_with_one_line_or_are_counted(tiny_vlm, tmp_path):
    path = write_csv_dataset(tmp_path / "my_data", edit=_spoil)
    data = {"dataset_name": "csv", "data_files": [str(path)], "dataset_columns": {"id": "qid"}}
    expected = "row 'q02': answer_not_in_options (answer 'E', letters ABCD)"
    for method in ("grpo", "sft", "dpo"):
        path = recipe(tmp_path, method, data, method, model_name_or_path=tiny_vlm, output_dir=str(tmp_path / method))
        result = cli(tmp_path, method, "--config", path, ok=False)
        assert (
            result.returncode == 2
            and result.stderr.strip().splitlines()[-1] == f"medvlm-trl {method}: error: {expected}"
        )
    result = cli(tmp_path, "make-split", "dataset", "--config", tmp_path / "sft.yaml", "--out-dir", "s", ok=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(expected)
    result = cli(
        tmp_path, "eval", "--model", tiny_vlm, "--split", "csv", "--data_files", data["data_files"][0], ok=False
    )
    assert result.returncode == 2 and "has split(s) ['train'], not 'test'" in result.stderr.strip().splitlines()[-1]
    result = cli(
        tmp_path,
        "grpo",
        "--config",
        tmp_path / "grpo.yaml",
        "--dataset_columns",
        '{"question": "Q"}',
        "--output_dir",
        "g2",
        ok=False,
    )
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "dataset_columns['question'] is 'Q', but the data has no such column" in last
    # skip_bad_rows: trained on the rest, the skip counted in the run's log.
    path = recipe(tmp_path, "skip", data, "sft", model_name_or_path=tiny_vlm, output_dir=str(tmp_path / "skip"),
                  skip_bad_rows=True)  # fmt: skip
    result = cli(tmp_path, "sft", "--config", path)
    assert "skipped 1 bad rows: answer_not_in_options: 1 (e.g. ['q02'])" in result.stderr
