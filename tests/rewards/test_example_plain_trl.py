"""examples/rewards_in_plain_trl.py: plain `trl.GRPOTrainer` trains the tiny Qwen2-VL with our rewards, TRL logs each
under its name, and the rewards receive TRL's conversational completions and the dataset's `answer`/`options`."""

import importlib.util
from pathlib import Path

import pytest

from medvlm_trl.rewards import SemanticJudgeReward, accuracy_reward

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rewards_in_plain_trl.py"


@pytest.fixture
def example():
    spec = importlib.util.spec_from_file_location("rewards_in_plain_trl", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_plain_trl_trains_with_our_rewards(example, tiny_vlm, tiny_lm, tmp_path, monkeypatch, capsys):
    import trl

    calls = []

    def spy(completions, **kwargs):
        calls.append((completions, kwargs))
        return accuracy_reward(completions, **kwargs)

    spy.__name__ = "accuracy_reward"
    monkeypatch.setattr(example, "accuracy_reward", spy)

    trainer = example.main(
        ["--model", tiny_vlm, "--judge", tiny_lm, "--max-steps", "2", "--output-dir", str(tmp_path / "out")]
    )

    assert type(trainer) is trl.GRPOTrainer
    assert trainer.state.global_step == 2
    names = ["format_reward", "accuracy_reward", "ecr_length_reward", "cwr_length_reward", "semantic_reward"]
    assert trainer.reward_func_names == names
    assert isinstance(trainer.reward_funcs[-1], SemanticJudgeReward)
    logged = [log for log in trainer.state.log_history if "rewards/format_reward/mean" in log]
    assert len(logged) == 2
    for log in logged:
        for name in names:
            assert 0.0 <= log[f"rewards/{name}/mean"] <= 1.0

    assert len(calls) == 2
    rows = {tuple(options): answer for _, options, answer in example.QUESTIONS}
    for completions, kwargs in calls:
        assert len(completions) == 4
        assert all(c[0]["role"] == "assistant" and isinstance(c[0]["content"], str) for c in completions)
        assert len(kwargs["answer"]) == len(kwargs["options"]) == 4
        for answer, options in zip(kwargs["answer"], kwargs["options"]):
            assert rows[tuple(options)] == answer
    assert "rewards/semantic_reward/mean per step" in capsys.readouterr().out


def test_help_shows_the_whole_first_paragraph(example, capsys):
    first = "".join(example.__doc__.split("\n\n")[0].split())
    with pytest.raises(SystemExit):
        example.main(["--help"])
    assert first in "".join(capsys.readouterr().out.split())  # argparse re-wraps, and breaks at hyphens
