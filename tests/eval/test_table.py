"""`medvlm-trl table`: each paper's Table 1 rendered from result folders written by real evals of the tiny model."""

import csv
import io
import json

import pytest
from PIL import Image

from medvlm_trl.eval import run as eval_run
from medvlm_trl.eval.table import build_table, load_paper_results, main, render_csv, render_markdown
from medvlm_trl.tiny import TINY_MAX_PIXELS, TINY_MIN_PIXELS

PIXELS = ["--min_pixels", str(TINY_MIN_PIXELS), "--max_pixels", str(TINY_MAX_PIXELS)]


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_vlm, tiny_lm):
    """RESULTS_DIR with three rows: the tiny model on the sample set with the simple prompt (zero-shot row) and the
    R1 prompt (GRPO row), and a reasoning run with the perplexity and length metrics (the study's instruct GRPO row)."""
    root = tmp_path_factory.mktemp("results")
    common = ["--model", tiny_vlm, "--split", "sample", "--max_new_tokens", "4", "--no_progress", *PIXELS]
    assert eval_run.main([*common, "--prompt", "simple", "--out", str(root / "zero_shot_qwen2vl_2b")]) == 0
    assert eval_run.main([*common, "--prompt", "r1", "--out", str(root / "grpo_qwen2vl_2b")]) == 0

    def reasoned(prompts, images):  # the tiny random model writes no <think>; this double does, the rest is real
        return [f"<think>Reasoning number {i} about this scan.</think><answer>A</answer>" for i in range(len(prompts))]

    args = eval_run.EvalArguments(
        model=tiny_vlm, split="sample", prompt="study", out=str(root / "grpo_qwen2vl_2b_instruct"),
        metrics="perplexity,token_length", perplexity_model=tiny_lm, device="cpu", progress=False,
        min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS,
    )  # fmt: skip
    eval_run.run_eval(args, generator=reasoned)
    return root


def summary(results, row):
    return json.loads((results / row / "summary.json").read_text())


def cells(markdown: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("| ")]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[1:]}


def test_the_paper_values_are_the_published_ones():
    data = load_paper_results()["medvlm_r1"]
    rows = {r["key"]: r for r in data["rows"]}
    assert rows["grpo_qwen2vl_2b"]["paper"] == {"MRI": 95.33, "CT": 70.33, "X-ray": 69.0, "average": 78.22}
    assert rows["random_guess"]["paper"] == {"MRI": 25.0, "CT": 30.25, "X-ray": 26.0, "average": 27.08}
    # Every cell against a copy of the printed tables: tests/eval/test_paper_results.py.


@pytest.mark.slow  # the shared fixture runs three real evals of the tiny model (~25 s)
def test_medvlm_r1_table_from_real_eval_results(results):
    table = build_table("medvlm_r1", results)
    md = render_markdown(table)
    grid = cells(md)
    zero_shot, grpo = summary(results, "zero_shot_qwen2vl_2b"), summary(results, "grpo_qwen2vl_2b")
    # Our cells are the eval summaries' accuracies; the sample set has MRI and CT rows but no X-ray row.
    mri, ct = grpo["modalities"]["MRI"]["accuracy"], grpo["modalities"]["CT"]["accuracy"]
    assert grid["GRPO (MedVLM-R1)"][:2] == [
        f"{mri:.2f} / 95.33 ({mri - 95.33:+.2f})",
        f"{ct:.2f} / 70.33 ({ct - 70.33:+.2f})",
    ]
    assert grid["GRPO (MedVLM-R1)"][2:] == ["— / 69.00", "— / 78.22"]  # no X-ray rows: no average
    zero_mri = zero_shot["modalities"]["MRI"]["accuracy"]
    assert grid["Qwen2-VL-2B (zero-shot)"][0] == f"{zero_mri:.2f} / 61.67 ({zero_mri - 61.67:+.2f})"
    # Rows without a results folder are missing, never 0; the paper's value is still shown.
    assert grid["Qwen2-VL-72B (zero-shot)"] == [
        "missing / 68.67",
        "missing / 60.67",
        "missing / 72.33",
        "missing / 67.22",
    ]
    assert grid["SFT (Qwen2-VL-2B, 600 MRI)"] == [
        "missing / 94.00",
        "missing / 54.33",
        "missing / 34.00",
        "missing / 59.44",
    ]
    # The random guess is computed from the test rows behind the results (four options each in the sample set).
    assert grid["Random guess"] == ["25.00 / 25.00 (+0.00)", "25.00 / 30.25 (-5.25)", "— / 26.00", "— / 27.08"]
    # The notes name the scoring rule of each row's eval.
    assert "scored by the letter (a bare correct letter" in md and "Qwen2-VL-2B (zero-shot)" in md
    assert (
        "scored by the strict (MedVLM-R1: the `<answer>` block is exactly the correct letter) rule: GRPO (MedVLM-R1)"
        in md
    )
    assert "folders not in the medvlm_r1 table (not shown): grpo_qwen2vl_2b_instruct" in md


@pytest.mark.slow  # the shared fixture runs three real evals of the tiny model (~25 s)
def test_csv_has_one_line_per_cell_with_the_delta(results):
    table = build_table("medvlm_r1", results)
    lines = list(csv.DictReader(io.StringIO(render_csv(table))))
    assert len(lines) == len(table.rows) * len(table.columns)
    by_cell = {(r["row"], r["column"]): r for r in lines}
    grpo = by_cell[("grpo_qwen2vl_2b", "MRI")]
    accuracy = summary(results, "grpo_qwen2vl_2b")["modalities"]["MRI"]["accuracy"]
    assert float(grpo["ours"]) == accuracy and float(grpo["paper_value"]) == 95.33
    assert float(grpo["delta"]) == pytest.approx(accuracy - 95.33) and int(grpo["n"]) > 0
    missing = by_cell[("zero_shot_qwen2vl_72b", "MRI")]
    assert missing["ours"] == "" and missing["delta"] == ""  # missing, not 0


@pytest.mark.slow  # the shared fixture runs three real evals of the tiny model (~25 s)
def test_study_table_shows_accuracy_and_reasoning_metrics(results):
    grid = cells(render_markdown(build_table("rl_medvqa", results)))
    study = summary(results, "grpo_qwen2vl_2b_instruct")
    ppl, length = study["metrics"]["perplexity"], study["metrics"]["token_length"]
    assert ppl["n"] == study["overall"]["n"] and ppl["mean"] > 1
    row = grid["GRPO, instruct-model init"]
    accuracy = study["overall"]["accuracy"]
    assert row[0] == f"{accuracy:.2f} / 58.04 ({accuracy - 58.04:+.2f})"
    assert row[1] == "— / 0.21 ± 0.24"  # similarity was not computed for this row
    assert row[2] == f"{ppl['mean']:.2f} ± {ppl['std']:.2f} / 13.28 ± 19.64 ({ppl['mean'] - 13.28:+.2f})"
    assert row[4] == f"{length['mean']:.2f} ± {length['std']:.2f} / 66.41 ± 74.34 ({length['mean'] - 66.41:+.2f})"
    # Cells the paper leaves empty read n.a.; its `*` marks follow their values and are explained in the notes.
    assert grid["DPO"] == ["missing / 46.97", *["missing / n.a."] * 4]
    assert grid["LLaVA-1.5-7B (zero-shot)"][:2] == ["missing / 11.80", "missing / 0.19 ± 0.24*"]


@pytest.mark.slow  # the shared fixture runs three real evals of the tiny model (~25 s)
def test_cli_writes_markdown_csv_and_a_valid_png(results, tmp_path, capsys):
    out = tmp_path / "tables"
    assert main(["--paper", "medvlm_r1", str(results), "--out", str(out)]) == 0
    assert "| Random guess |" in capsys.readouterr().out
    for suffix in ("md", "csv"):
        assert (out / f"table1_medvlm_r1.{suffix}").stat().st_size > 0
    with Image.open(out / "table1_medvlm_r1.png") as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100
        image.verify()
    assert main(["--paper", "rl_medvqa", str(results), "--out", str(out)]) == 0
    with Image.open(out / "table1_rl_medvqa.png") as image:
        image.verify()


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["--paper", "medvlm_r1", str(tmp_path / "nowhere")]) == 2
    assert "results folder not found" in capsys.readouterr().err
    (tmp_path / "grpo_qwen2vl_2b").mkdir()
    (tmp_path / "grpo_qwen2vl_2b" / "summary.json").write_text("{not json")
    assert main(["--paper", "medvlm_r1", str(tmp_path)]) == 2
    assert "grpo_qwen2vl_2b/summary.json: not JSON" in capsys.readouterr().err
    assert main(["--paper", "other", str(tmp_path)]) == 2  # a bad flag: one line, not argparse's usage text
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("medvlm-trl table: error: argument --paper: invalid choice: 'other'")


def test_an_incomplete_eval_is_marked_not_shown_as_a_finished_row(tmp_path):
    # A summary as `medvlm-trl eval` writes it when rows are left without predictions (a run stopped part-way).
    row = tmp_path / "grpo_qwen2vl_2b"
    row.mkdir()
    group = {"n": 3, "accuracy": 100.0, "random_guess": 25.0}
    summary = {"modalities": {"MRI": group}, "overall": group, "rows": 5, "complete": False,
               "skipped": {"total": 0, "counts": {}, "examples": {}}}  # fmt: skip
    (row / "summary.json").write_text(json.dumps(summary))
    table = build_table("medvlm_r1", tmp_path)
    md = render_markdown(table)
    assert "| GRPO (MedVLM-R1) † | 100.00 / 95.33 (+4.67) |" in md
    assert "† GRPO (MedVLM-R1): incomplete eval: 3 of 5 rows have predictions (rerun it to resume)" in md
    caveats = {r["row"]: r["caveats"] for r in csv.DictReader(io.StringIO(render_csv(table)))}
    assert caveats["grpo_qwen2vl_2b"].startswith("incomplete eval") and caveats["random_guess"] == ""


def test_a_summary_value_of_the_wrong_type_is_named_by_file_and_key(tmp_path, capsys):
    """It used to end with `could not convert string to float: 'high'`, naming neither."""
    row = tmp_path / "grpo_qwen2vl_2b"
    row.mkdir()
    summary = {"modalities": {"MRI": {"n": 3, "accuracy": "high", "random_guess": 25.0}},
               "overall": {"n": "3", "accuracy": 100.0, "random_guess": 25.0}, "rows": 5, "complete": True}  # fmt: skip
    (row / "summary.json").write_text(json.dumps(summary))
    assert main(["--paper", "medvlm_r1", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{row / 'summary.json'}: wrong value type(s): modalities.MRI.accuracy is 'high', not a number" in err
    assert "overall.n is '3', not a count" in err
