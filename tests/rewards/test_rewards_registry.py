"""The import story: recipe names -> callables, importing without torch, TRL's own `--reward_funcs a.b.func` lookup,
and the examples in the rewards' docstrings."""

import doctest
import importlib
import re
import subprocess
import sys

import pytest

import medvlm_trl.rewards as rewards
from medvlm_trl.rewards import (
    REWARD_FUNCS,
    REWARD_NAMES,
    SemanticJudgeReward,
    accuracy_reward,
    cwr_length_reward,
    ecr_length_reward,
    format_reward,
    get_reward_funcs,
)


def test_import_does_not_import_torch():
    code = (
        "import sys, medvlm_trl.rewards; "
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_registry_names():
    assert set(REWARD_NAMES) == {"format", "accuracy", "semantic", "ecr", "cwr"}
    assert REWARD_FUNCS == {
        "format": format_reward,
        "accuracy": accuracy_reward,
        "ecr": ecr_length_reward,
        "cwr": cwr_length_reward,
    }


def test_get_reward_funcs_keeps_the_recipes_order():
    funcs = get_reward_funcs(["accuracy", "format", "cwr", "ecr"])
    assert funcs == [accuracy_reward, format_reward, cwr_length_reward, ecr_length_reward]
    assert get_reward_funcs("format") == [format_reward]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as info:
        get_reward_funcs(["format", "acuracy"])
    message = str(info.value)
    assert "acuracy" in message
    for name in REWARD_NAMES:
        assert name in message


def test_semantic_needs_a_judge_model():
    with pytest.raises(ValueError, match="semantic_judge_model"):
        get_reward_funcs(["format", "semantic"])


def test_semantic_is_built_once_with_its_arguments():
    funcs = get_reward_funcs(
        ["semantic", "format", "semantic"],
        semantic_judge_model="BioMistral/BioMistral-7B",
        semantic_judge_kwargs={"batch_size": 3, "dtype": "bfloat16"},
    )
    judge = funcs[0]
    assert isinstance(judge, SemanticJudgeReward)
    assert funcs[2] is judge
    assert (judge.model_name_or_path, judge.batch_size, judge.dtype) == ("BioMistral/BioMistral-7B", 3, "bfloat16")
    assert judge.__name__ == "semantic_reward"
    assert judge.model is None  # nothing is loaded before the first call


def test_length_parameters():
    ecr, cwr = get_reward_funcs(["ecr", "cwr"], length_weight=0.5, length_target=4)
    assert (ecr.__name__, cwr.__name__) == ("ecr_length_reward", "cwr_length_reward")
    completion = "<think>a b</think><answer>A</answer>"
    assert ecr([completion]) == [0.25]
    assert cwr([completion], answer=["A"], options=[["x", "y"]]) == [0.25]


# ---------------------------------------------------------------------------------------------------------------------
# `trl grpo --reward_funcs medvlm_trl.rewards.format_reward`: TRL 1.16's grpo script imports any dotted path itself.
# ---------------------------------------------------------------------------------------------------------------------
class _Captured(Exception):
    pass


def test_trl_grpo_script_resolves_our_dotted_paths(monkeypatch, tmp_path):
    trl = pytest.importorskip("trl")
    import datasets
    from trl.scripts import grpo

    captured = {}

    class CapturingTrainer:
        def __init__(self, *, reward_funcs, **kwargs):
            captured["reward_funcs"] = reward_funcs
            raise _Captured

    monkeypatch.setattr(trl, "GRPOTrainer", CapturingTrainer)
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: {"train": []})
    paths = [
        "medvlm_trl.rewards.format_reward",
        "medvlm_trl.rewards.accuracy_reward",
        "medvlm_trl.rewards.ecr_length_reward",
        "medvlm_trl.rewards.cwr_length_reward",
    ]
    args = [
        "--model_name_or_path",
        "unused",
        "--dataset_name",
        "unused",
        "--output_dir",
        str(tmp_path),
        "--bf16",
        "false",
    ]
    args += ["--reward_funcs", *paths]
    script_args, training_args, model_args, dataset_args = grpo.make_parser().parse_args_and_config(args=args)
    assert script_args.reward_funcs == paths
    with pytest.raises(_Captured):
        grpo.main(script_args, training_args, model_args, dataset_args)
    assert captured["reward_funcs"] == [format_reward, accuracy_reward, ecr_length_reward, cwr_length_reward]


def test_grpo_script_still_resolves_dotted_paths():
    """Guards the README line: if a TRL upgrade drops the dotted-path branch, this fails."""
    pytest.importorskip("trl")
    source = importlib.import_module("trl.scripts.grpo").__file__
    text = open(source).read()
    assert 'elif "." in func_name:' in text and "importlib.import_module(module_path)" in text


# ---------------------------------------------------------------------------------------------------------------------
# The docstring examples are runnable (TRL style: fenced with ```python, which doctest must skip).
# ---------------------------------------------------------------------------------------------------------------------
class _FencedParser(doctest.DocTestParser):
    def parse(self, string, name="<string>"):
        return super().parse(re.sub(r"^\s*```(python)?\s*$", "", string, flags=re.M), name)


@pytest.mark.parametrize("module", ["parsing", "accuracy", "length", "registry", "judge"])
def test_docstring_examples(module):
    mod = importlib.import_module(f"medvlm_trl.rewards.{module}")
    finder = doctest.DocTestFinder(parser=_FencedParser())
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(mod, globs=vars(rewards) | vars(mod)) if t.examples]
    assert tests, f"no examples in {module}"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_semantic_judge_prompt_is_chosen_by_name():
    from medvlm_trl.rewards.judge import FENCED_JUDGE_PROMPT, PAPER_JUDGE_PROMPT

    (paper,) = get_reward_funcs(["semantic"], semantic_judge_model="some/judge")
    (fenced,) = get_reward_funcs(["semantic"], semantic_judge_model="some/judge", semantic_judge_prompt="fenced")
    assert paper.prompt_template == PAPER_JUDGE_PROMPT and fenced.prompt_template == FENCED_JUDGE_PROMPT
    with pytest.raises(ValueError, match="unknown judge prompt"):
        get_reward_funcs(["semantic"], semantic_judge_model="some/judge", semantic_judge_prompt="other")


def test_the_studys_semantic_recipes_use_its_prompt():
    import yaml

    from medvlm_trl.reproduce import recipes_root

    recipes = sorted((recipes_root() / "rl_medvqa").glob("grpo_*.yaml"))
    semantic = [r for r in recipes if "semantic" in yaml.safe_load(r.read_text())["reward_funcs"]]
    assert len(semantic) == 3
    assert all(yaml.safe_load(r.read_text())["semantic_judge_prompt"] == "paper" for r in semantic)
