"""A model, processor or tokenizer that cannot be loaded (a wrong path, a hub id with no network and no cached copy)
ends as one line naming what was being loaded and from where: the training and eval commands exit 2, the Python
classes raise `ModelLoadError`; never a transformers traceback. So does asking for vLLM where it is not installed."""

import pytest
from helpers import write_recipe

from medvlm_trl.loading import ModelLoadError, load_pretrained

HUB_HINT = "not a local folder; as a hub id it needs network access or a copy in the Hugging Face cache"


def test_a_missing_folder_and_an_unreachable_hub_id_are_named(tmp_path):
    from transformers import AutoTokenizer

    with pytest.raises(ModelLoadError, match=r"cannot load the ECR tokenizer from '.*nowhere' \(" + HUB_HINT):
        load_pretrained(AutoTokenizer.from_pretrained, tmp_path / "nowhere", "ECR tokenizer")
    # The tests run with HF_HUB_OFFLINE=1 (conftest.py), as a user without network would.
    with pytest.raises(ModelLoadError, match=r"from 'no-org/no-such-model' \(not a local folder"):
        load_pretrained(AutoTokenizer.from_pretrained, "no-org/no-such-model", "ECR tokenizer")


def test_a_folder_without_a_model_says_it_is_a_local_path(tmp_path):
    from transformers import AutoModelForCausalLM

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"cannot load the judge from '.*empty' \(a local path\): \S"):
        load_pretrained(AutoModelForCausalLM.from_pretrained, tmp_path / "empty", "judge")


def test_other_errors_pass_through():
    def broken(name):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        load_pretrained(broken, "x", "model")


def _recipe(tmp_path, **values) -> str:
    data = {"dataset_name": "sample", "bf16": False, "output_dir": str(tmp_path / "out"), "max_steps": 1}
    data.update(values)
    return str(write_recipe(tmp_path, data))


@pytest.mark.parametrize("command", ["grpo", "sft", "dpo"])
def test_training_commands_name_a_model_they_cannot_load(tmp_path, capsys, command):
    from medvlm_trl import dpo, grpo, sft

    main = {"grpo": grpo.main, "sft": sft.main, "dpo": dpo.main}[command]
    extra = {"reward_funcs": ["format", "accuracy"]} if command == "grpo" else {}
    recipe = _recipe(tmp_path, model_name_or_path=str(tmp_path / "no_model"), **extra)
    assert main(["--config", recipe]) == 2
    err = capsys.readouterr().err
    assert f"medvlm-trl {command}: error: cannot load the " in err and "(model_name_or_path)" in err
    assert "no_model" in err and "Traceback" not in err


def test_eval_names_a_model_it_cannot_load(tmp_path, capsys):
    from medvlm_trl.eval.run import main

    code = main(["--model", str(tmp_path / "no_model"), "--split", "sample", "--out", str(tmp_path / "run"),
                 "--no_progress", "--metrics", "none"])  # fmt: skip
    assert code == 2
    assert "medvlm-trl eval: error: cannot load the processor (--model) from" in capsys.readouterr().err


def test_the_semantic_judge_and_the_metric_models_name_what_failed(tmp_path):
    from medvlm_trl.eval.metrics import ReasoningPerplexity, ThinkingRewardJudge, token_lengths
    from medvlm_trl.rewards import SemanticJudgeReward, make_ecr_length_reward

    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="cannot load the semantic judge's tokenizer from"):
        SemanticJudgeReward(nowhere)(["<think>The signal is bright.</think><answer>A</answer>"])
    with pytest.raises(ModelLoadError, match=r"cannot load the perplexity model \(perplexity_model\)'s tokenizer"):
        ReasoningPerplexity(nowhere).load()
    with pytest.raises(ModelLoadError, match=r"cannot load the thinking-reward judge \(judge_model\)'s tokenizer"):
        ThinkingRewardJudge(nowhere).load()
    with pytest.raises(ModelLoadError, match="cannot load the tokenizer that counts tokens"):
        token_lengths(["a b c"], nowhere)
    with pytest.raises(ModelLoadError, match="cannot load the tokenizer that counts think tokens"):
        make_ecr_length_reward(tokenizer=nowhere)(["<think>a b</think><answer>A</answer>"])


def _without_vllm(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else find_spec(name, *a))


def test_use_vllm_without_vllm_is_one_line_before_any_model_is_loaded(tmp_path, capsys, monkeypatch):
    from medvlm_trl import grpo

    _without_vllm(monkeypatch)
    recipe = _recipe(tmp_path, model_name_or_path=str(tmp_path / "no_model"), reward_funcs=["format"], use_vllm=True)
    assert grpo.main(["--config", recipe]) == 2
    err = capsys.readouterr().err
    assert "use_vllm is true, but vLLM is not installed" in err and "cannot load" not in err


def test_eval_backend_vllm_without_vllm_is_one_line(tmp_path, capsys, monkeypatch):
    from medvlm_trl.eval.run import main

    _without_vllm(monkeypatch)
    code = main(["--model", str(tmp_path / "no_model"), "--split", "sample", "--backend", "vllm",
                 "--out", str(tmp_path / "run"), "--no_progress"])  # fmt: skip
    assert code == 2
    assert "--backend vllm, but vLLM is not installed" in capsys.readouterr().err


def test_a_cached_hub_model_the_loader_refuses_is_not_blamed_on_the_network(tmp_path, tiny_lm):
    """A hub id found in the cache (offline) but of the wrong kind, here a text-only LM where an image-text model is
    needed: transformers' ValueError is the reason; 'needs network access or a cached copy' would send the user the
    wrong way."""
    import shutil

    from transformers import AutoModelForImageTextToText

    repo = tmp_path / "models--org--tiny-lm"
    shutil.copytree(tiny_lm, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    with pytest.raises(ModelLoadError, match=r"from 'org/tiny-lm' \(a hub id\): Unrecognized configuration") as err:
        load_pretrained(AutoModelForImageTextToText.from_pretrained, "org/tiny-lm", "model", cache_dir=str(tmp_path))
    assert "network" not in str(err.value)


def test_a_semantic_judge_that_cannot_be_found_stops_grpo_before_the_policy_is_loaded(tmp_path, capsys):
    from medvlm_trl import grpo

    recipe = _recipe(
        tmp_path,
        model_name_or_path=str(tmp_path / "no_model"),
        reward_funcs=["format", "semantic"],
        semantic_judge_model=str(tmp_path / "no_judge"),
    )
    assert grpo.main(["--config", recipe]) == 2
    err = capsys.readouterr().err
    assert "cannot load the semantic judge (semantic_judge_model) from" in err and "no_judge" in err
    assert "(model_name_or_path)" not in err  # the policy was never attempted
