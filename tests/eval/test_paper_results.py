"""Every number of `medvlm_trl/resources/paper_results.json` against a copy of both papers' Table 1 kept here, as
printed (copied from the project's notes on the papers), so that a typo in the data file cannot slip in."""

import re

import pytest

from medvlm_trl.eval.table import load_paper_results

# MedVLM-R1 (Pan et al.), Table 1: accuracy (%), strict rule.
MEDVLM_R1_TABLE = """
| method | seen medical samples | MRI->MRI | MRI->CT | MRI->X-ray | average |
|---|---|---|---|---|---|
| Random Guess | / | 25.00 | 30.25 | 26.00 | 27.08 |
| Qwen2-VL-2B (zero-shot) | / | 61.67 | 50.67 | 53.00 | 55.11 |
| Qwen2-VL-7B (zero-shot) | / | 72.33 | 68.67 | 66.63 | 69.21 |
| Qwen2-VL-72B (zero-shot) | / | 68.67 | 60.67 | 72.33 | 67.22 |
| HuatuoGPT-Vision-7B (zero-shot medical VLM) | 1,294,062 | 71.00 | 63.00 | 73.66 | 69.22 |
| Qwen2-VL-2B (SFT) | 600 | 94.00 | 54.33 | 34.00 | 59.44 |
| Ours-2B (GRPO) | 600 | 95.33 | 70.33 | 69.00 | 78.22 |
"""

# The RL-for-medical-VQA study, Table 1: mean (± std); `-` is empty in the paper.
STUDY_TABLE = """
| row | data | accuracy | similarity | perplexity | thinking reward | thinking token length |
|---|---|---|---|---|---|---|
| Qwen2-VL-2B-Instruct (zero-shot) | - | 47.29 | - | - | - | - |
| SFT: LoRA | 10K | 45.98 | - | - | - | - |
| SFT: full fine-tuning | 10K | 52.00 | - | - | - | - |
| SFT: DPO fine-tuning | 10K | 46.97 | - | - | - | - |
| GRPO from scratch (Qwen2-VL-2B) | 10K | 51.56 | 0.49 (± 0.19) | 14.16 (± 2.80) | 9.27 (± 2.09) | 141.46 (± 69.10) |
| GRPO (Instruct) | 10K | 58.04 | 0.21 (± 0.24) | 13.28 (± 19.64) | 7.66 (± 2.49) | 66.41 (± 74.34) |
| GRPO + Semantic Alignment | 10K | 59.86 | 0.46 (± 0.19) | 36.54 (± 10.97) | 8.07 (± 2.63) | 64.42 (± 24.02) |
| GRPO + Semantic Alignment + ECR | 10K | 50.17 | 0.65 (± 0.07) | 20.54 (± 2.92) | 9.42 (± 1.91) | 338.14 (± 95.69) |
| GRPO + Semantic Alignment + CWR | 10K | 54.68 | 0.61 (± 0.11) | 18.45 (± 2.40) | 7.82 (± 3.52) | 224.06 (± 73.72) |
| Dr.GRPO | 10K | 61.09 | 0.24 (± 0.25) | 11.10 (± 12.63) | 4.17 (± 3.76) | 76.11 (± 80.27) |
| LLaVA-7B-v1.5 (zero-shot) | - | 11.8 | 0.19 (± 0.24)* | - | - | - |
| Llama-3.2-11B-Vision-Instruct (zero-shot) | - | 22.92 | 0.33 (± 0.27)* | - | - | - |
"""
MEDVLM_R1_COLUMNS = ["MRI", "CT", "X-ray", "average"]
STUDY_COLUMNS = ["accuracy", "similarity", "perplexity", "thinking_reward", "token_length"]
CELL = re.compile(r"^(?P<mean>\d+(?:\.\d+)?)(?: \(± (?P<std>\d+(?:\.\d+)?)\))?(?P<mark>\*?)$")


def parse(table: str) -> dict[str, list[str]]:
    lines = [line.strip().strip("|").split("|") for line in table.strip().splitlines()[2:]]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in lines}


def published(text: str):
    """A printed cell as (value, std, mark); `-` is (None, None, "")."""
    if text == "-":
        return None, None, ""
    match = CELL.match(text)
    assert match, f"cannot read the printed cell {text!r}"
    std = match["std"]
    return float(match["mean"]), None if std is None else float(std), match["mark"]


def test_every_medvlm_r1_cell():
    layout = load_paper_results()["medvlm_r1"]
    printed = parse(MEDVLM_R1_TABLE)
    rows = {row["paper_label"]: row for row in layout["rows"]}
    assert list(rows) == list(printed), "the JSON has the paper's seven rows, in its order"
    assert [c["key"] for c in layout["columns"]] == MEDVLM_R1_COLUMNS
    for label, cells in printed.items():
        values = [published(c)[0] for c in cells[1:]]
        assert [rows[label]["paper"][k] for k in MEDVLM_R1_COLUMNS] == values, label
        assert all(v is not None for v in values), "MedVLM-R1's Table 1 has no empty cell"


def test_medvlm_r1_averages_are_the_mean_of_their_cells_except_the_printed_sft_one():
    for row in load_paper_results()["medvlm_r1"]["rows"]:
        paper = row["paper"]
        mean = sum(paper[k] for k in MEDVLM_R1_COLUMNS[:3]) / 3
        if row["key"] == "sft_qwen2vl_2b":  # printed 59.44; its cells average 60.78: kept as printed, and said so
            assert paper["average"] == 59.44 and mean == pytest.approx(60.78, abs=0.005)
            assert "60.78" in row["source"]
        else:
            assert paper["average"] == pytest.approx(mean, abs=0.005), row["key"]


def test_every_study_cell_with_its_std_and_mark():
    layout = load_paper_results()["rl_medvqa"]
    printed = parse(STUDY_TABLE)
    rows = {row["paper_label"]: row for row in layout["rows"]}
    assert list(rows) == list(printed), "the JSON has the study's twelve rows, in its order"
    assert [c["key"] for c in layout["columns"]] == STUDY_COLUMNS
    for label, cells in printed.items():
        row = rows[label]
        for key, text in zip(STUDY_COLUMNS, cells[1:]):
            value, std, mark = published(text)
            stored = row["paper"][key]
            if key == "accuracy" or value is None:
                assert stored == value, (label, key)  # a plain number, or null where the paper is empty
            else:
                assert stored == {"mean": value, "std": std}, (label, key)
            assert (row.get("marks") or {}).get(key, "") == mark, (label, key)
    assert "*" in layout["marks"]


def test_every_row_has_its_recipe_and_a_source():
    for paper in ("medvlm_r1", "rl_medvqa"):
        for row in load_paper_results()[paper]["rows"]:
            assert row["source"] and row["label"]
