"""bench/answer_breakdown.py traces each phantom answer through the tiny base model's reasoning shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from medvlm_trl.data.phantom import load_phantom
from medvlm_trl.data.prompts import LETTERS
from medvlm_trl.tiny_base import THINK_TEMPLATE

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _completion(finding: str, option: str, letter: str, answer: str) -> str:
    text = THINK_TEMPLATE.format(finding=finding, option=option, letter=letter)
    return text.replace(f"<answer>{letter}</answer>", f"<answer>{answer}</answer>")


def test_counts_reading_naming_look_up_and_letters_per_group(tmp_path):
    rows = [r for r in load_phantom("test", modality="MRI") if len(r["options"]) == 3][:6]
    preds = []
    for i, row in enumerate(rows):
        right = row["options"].index(row["finding"])
        wrong = (right + 1) % 3
        if i < 2:  # reads, names and answers the finding's option: correct
            c = _completion(row["finding"], row["finding"], LETTERS[right], LETTERS[right])
        elif i < 4:  # reads right, names another option with that option's letter: wrong
            c = _completion(row["finding"], row["options"][wrong], LETTERS[wrong], LETTERS[wrong])
        elif i == 4:  # reads right, names it, but gives another letter
            c = _completion(row["finding"], row["finding"], LETTERS[wrong], LETTERS[wrong])
        else:
            c = "no reasoning at all"
        preds.append({"id": row["id"], "completion": c})
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "predictions.jsonl").write_text("\n".join(json.dumps(p) for p in preds) + "\n")
    out = tmp_path / "b.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "answer_breakdown.py"), str(folder), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("| all |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # n, strict, reads, names, look-up, unparsed: 2 of 6 correct; 5 read right; 3 name the finding; 4 look up right
    assert cells[1:7] == ["6", "33.3", "83.3", "50.0", "66.7", "1"]
    assert out.read_text().strip() == proc.stdout.strip()


def test_refuses_a_folder_without_predictions(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "answer_breakdown.py"), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and "predictions.jsonl not found" in proc.stderr
