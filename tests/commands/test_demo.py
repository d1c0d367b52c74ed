"""`make demo` end to end, shortened: eval -> GRPO -> eval -> the table and the reward curve, through the real entry
points."""

import json

import pytest

from medvlm_trl.demo import main as demo_main


@pytest.mark.slow
def test_demo_runs_and_writes_a_table_of_both_evaluations(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo_main(["--out", str(out), "--steps", "2", "--max-new-tokens", "8"]) == 0
    printed = capsys.readouterr().out
    table = (out / "table.md").read_text()
    assert "| before GRPO |" in table and "| after GRPO |" in table and "| random guess |" in table
    assert table.strip() in printed
    for stage in ("eval_before", "eval_after"):
        summary = json.loads((out / stage / "summary.json").read_text())
        assert summary["overall"]["n"] == len((out / stage / "predictions.jsonl").read_text().splitlines())
        assert set(summary["modalities"]) == {"MRI", "CT", "X-ray"}
        assert all(m["n"] == 300 for m in summary["modalities"].values())  # the phantom test split, 3 x 300
    state = json.loads((out / "grpo" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert (out / "grpo" / "README.md").exists()  # the model card
    assert (out / "reward_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| step | reward | format | accuracy |" in printed
    # the trained model is what the second evaluation read
    assert json.loads((out / "eval_after" / "run.json").read_text())["model"] == str(out / "grpo")


def test_the_table_reports_the_logged_rewards_of_the_run():
    from medvlm_trl.demo import render

    summary = {
        "modalities": {"CT": {"accuracy": 0.0, "random_guess": 25.0}, "MRI": {"accuracy": 50.0, "random_guess": 50.0}},
        "average": 25.0,
    }
    text = render(summary, summary, (0.0, 12.5), [(5, 0.25), (10, 0.5)])
    assert "|  | MRI | CT | average | format ok |" in text  # MedVLM-R1's order: in domain first
    assert "| before GRPO | 50.00 | 0.00 | 25.00 | 0.0% |" in text
    assert "| after GRPO | 50.00 | 0.00 | 25.00 | 12.5% |" in text
    assert "| random guess | 50.00 | 25.00 | | |" in text
    assert "0.250 at step 5, 0.500 at step 10" in text
