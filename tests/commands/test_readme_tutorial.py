"""README's "Your own data" tutorial, run as written: the bash block between its markers, on a generated folder of
images and CSV of questions in the layout README shows."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from own_data import MODALITIES, write_csv_dataset

README = Path(__file__).resolve().parents[2] / "README.md"


def tutorial() -> str:
    text = README.read_text()
    match = re.search(r"<!-- own-data-tutorial -->\n```bash\n(.*?)```\n<!-- /own-data-tutorial -->", text, re.S)
    assert match, "README lost its tutorial block (or its markers)"
    return match.group(1)


def test_readme_shows_the_csv_layout_the_tutorial_runs_on(tmp_path):
    shown = re.search(r"```text\n(qid,image,.*?)```", README.read_text(), re.S).group(1).splitlines()
    written = write_csv_dataset(tmp_path / "my_data").read_text().splitlines()
    assert shown == written[: len(shown)]


@pytest.mark.slow
def test_the_tutorial_runs_as_written(tmp_path):
    write_csv_dataset(tmp_path / "my_data", n=16)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", tutorial()], cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    test = json.loads((tmp_path / "splits" / "my_data" / "test.json").read_text())
    # 16 questions: 6 CT, 5 MRI, 5 X-ray; a quarter of each, rounded, held out
    assert sorted(r["modality"] for r in test["rows"]) == ["CT", "CT", "MRI", "X-ray"]
    assert (tmp_path / "runs" / "my_data" / "grpo" / "model.safetensors").is_file()
    for name in ("eval_base", "eval_grpo"):
        summary = json.loads((tmp_path / "runs" / "my_data" / name / "summary.json").read_text())
        assert sorted(summary["modalities"]) == sorted(MODALITIES) and summary["overall"]["n"] == len(test["rows"])
    assert result.stdout.count("overall") == 2 and "X-ray" in result.stdout
    assert "csv (questions.csv)" in (tmp_path / "runs" / "my_data" / "grpo" / "README.md").read_text()
