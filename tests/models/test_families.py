"""The recipes of `recipes/<paper>/<family>/` run end to end on their own tiny family, and DPO and resume work on
every family (`medvlm_trl.tiny_families`).

Each training recipe runs as `medvlm-trl grpo|sft` runs it, under the tiny profile's overrides
(`medvlm_trl.reproduce.TINY_TRAIN_OVERRIDES`, with the recipe folder's tiny family) cut to one step; each zero-shot
recipe runs as `medvlm-trl eval` on a few sample questions. The saved processor must keep the family's own grid and
the run's pixel bounds, so that evaluation sees images as training did.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForImageTextToText, AutoProcessor

from medvlm_trl import reproduce
from medvlm_trl.data.images import image_factor
from medvlm_trl.tiny_families import FAMILIES, spec, tiny_family_path

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
NEW_FAMILIES = [f for f in FAMILIES if f != "qwen2_vl"]  # qwen2_vl's recipes run in tests/commands/test_reproduce.py
FAMILY_RECIPES = sorted(
    p for paper in ("medvlm_r1", "rl_medvqa") for f in NEW_FAMILIES for p in (RECIPES / paper / f).glob("*.yaml")
)
TRAINING = [p for p in FAMILY_RECIPES if not p.name.startswith("zero_shot_")]
ZERO_SHOT = [p for p in FAMILY_RECIPES if p.name.startswith("zero_shot_")]


def _id(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.parent.name}/{path.stem}"


def tiny_training_recipe(source: Path, tmp_path: Path, family: str, **extra) -> Path:
    command = reproduce.command_for(source)
    keys = reproduce.training_keys(command)
    data = reproduce.apply_overrides(yaml.safe_load(source.read_text()), reproduce.TINY_TRAIN_OVERRIDES, keys, family)
    data = reproduce.apply_overrides(data, reproduce.TINY_COMMAND_OVERRIDES[command], keys, family)
    # One step on two rows: a batch of those two rows (GRPO: 2 completions each), logged.
    batch = (
        {"per_device_train_batch_size": 4, "num_generations": 2}
        if command == "grpo"
        else {"per_device_train_batch_size": 2}
    )
    data.update({"output_dir": str(tmp_path / "out"), "max_steps": 1, "max_train_samples": 2, "logging_steps": 1})
    data.update({**batch, **extra})
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("source", TRAINING, ids=_id)
def test_family_training_recipe_runs_on_its_tiny_family(source, tmp_path):
    from medvlm_trl.cli import main
    from medvlm_trl.model_card import read_model_card

    family = source.parent.name
    recipe = tiny_training_recipe(source, tmp_path, family)
    assert main([reproduce.command_for(source), "--config", str(recipe)]) == 0
    out = tmp_path / "out"
    model = AutoModelForImageTextToText.from_pretrained(out)
    assert model.config.model_type == family
    processor = AutoProcessor.from_pretrained(out)
    assert image_factor(processor) == spec(family).factor  # the family's own grid, kept in the saved processor
    size = processor.image_processor.size
    bound = reproduce._Tiny("base_pixels").resolve(family)  # the tiny profile's phantom bound on the family's grid
    assert (size.shortest_edge, size.longest_edge) == (bound, bound)  # the run's bounds
    assert read_model_card(out)["base_model"] == str(tiny_family_path(family))
    if reproduce.command_for(source) == "grpo":  # rewards logged, overall and per modality of the sample rows
        (logged, *_) = json.loads((out / "trainer_state.json").read_text())["log_history"]
        assert "rewards/format_reward/mean" in logged and any(k.startswith("reward_by_modality/") for k in logged)
    else:  # SFT: the answer-letter loss moved the weights
        initial = AutoModelForImageTextToText.from_pretrained(tiny_family_path(family)).state_dict()
        trained = model.state_dict()
        assert any(not torch.equal(trained[k], initial[k]) for k in initial)


@pytest.mark.parametrize("source", ZERO_SHOT, ids=_id)
def test_family_zero_shot_recipe_evaluates_on_its_tiny_family(source, tmp_path):
    from medvlm_trl.eval.run import EvalArguments, run_eval

    family, paper = source.parent.name, source.parent.parent.name
    protocol = reproduce.load_protocol(RECIPES / paper)
    settings = {**reproduce.eval_settings(protocol), **reproduce.load_eval_recipe(source, protocol)}
    settings = reproduce.apply_overrides(settings, reproduce.TINY_EVAL_OVERRIDES, reproduce.eval_keys(), family)
    settings.update(out=str(tmp_path / "eval"), limit=2, metrics="none")
    summary = run_eval(EvalArguments(**settings))
    assert summary["overall"]["n"] == 2 and summary["finished"]
    assert not summary["complete"]  # a --limit eval is never a full result
    assert summary["config"]["model"] == str(tiny_family_path(family))
    expected = {"enable_thinking": False} if family == "qwen3_5" else None
    assert summary["config"]["chat_template_kwargs"] == expected


def test_qwen3_5_template_switch_reaches_the_prompt(tmp_path):
    """Without the switch the Qwen3.5 prompt ends inside an opened think block; with it the block is closed, so a
    completion that starts with <think> (the papers' format) is not nested in one."""
    processor = AutoProcessor.from_pretrained(tiny_family_path("qwen3_5"))
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which modality?"}]}]
    opened = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    closed = processor.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=False, enable_thinking=False
    )
    assert opened.endswith("<|im_start|>assistant\n<think>\n")
    assert closed.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_dpo_prefers_the_correct_letter_on_every_family(family, tmp_path):
    """Three DPO steps on two pairs, through `medvlm-trl dpo`'s train: the implicit reward margin turns positive."""
    from medvlm_trl.dpo import make_dpo_parser, train

    source = RECIPES / "rl_medvqa" / "dpo_qwen2vl_2b_instruct.yaml"
    recipe = tiny_training_recipe(source, tmp_path, family, max_steps=3, learning_rate=1e-3)
    script_args, training_args, model_args = make_dpo_parser().parse_args_and_config(["--config", str(recipe)])
    assert model_args.model_name_or_path == reproduce._Tiny("base").resolve(family)  # the tiny profile's model
    trainer = train(script_args, training_args, model_args, recipe=str(recipe))
    margins = [log["rewards/margins"] for log in trainer.state.log_history if "rewards/margins" in log]
    assert len(margins) == 3 and margins[0] == pytest.approx(0.0, abs=1e-6) and margins[-1] > 0.0


def test_resume_ends_with_the_uninterrupted_runs_weights_on_every_family(family, family_vlm, tmp_path, monkeypatch):
    """Two GRPO steps with a checkpoint after each; then the second step again from checkpoint-1 with
    `--resume_from_checkpoint last`: the weights equal the uninterrupted run's (transformers#43701 left a resumed
    Qwen2-VL at its initial weights; the run callback reloads what transformers missed, on every family)."""
    from medvlm_trl.cli import main

    recipe = tiny_training_recipe(
        RECIPES / "medvlm_r1" / "grpo_qwen2vl_2b.yaml",
        tmp_path,
        family,
        max_steps=2,
        save_strategy="steps",
        save_steps=1,
        learning_rate=1e-3,
        overwrite_output_dir=False,
        reward_funcs=["tests.models.test_families.length_reward"],
        reward_weights=[1.0],
        model_name_or_path=family_vlm,  # the family's random tiny model on the sample rows, as the test was measured
        dataset_name="sample",
        per_device_train_batch_size=2,  # one question of 2 completions a step: both steps in one epoch
    )
    out, steps = tmp_path / "out", tmp_path / "steps.txt"
    monkeypatch.setenv(STEPS_ENV, str(steps))
    assert main(["grpo", "--config", str(recipe)]) == 0
    assert steps.read_text().split() == ["1", "2"]
    final = AutoModelForImageTextToText.from_pretrained(out).state_dict()
    initial = AutoModelForImageTextToText.from_pretrained(family_vlm).state_dict()
    assert any(not torch.equal(final[k], initial[k]) for k in final), "the run did not train"
    # Interrupt after checkpoint-1: remove what step 2 wrote, then resume from the newest whole checkpoint.
    shutil.rmtree(out / "checkpoint-2")
    for name in ("model.safetensors", "trainer_state.json"):
        (out / name).unlink()
    steps.unlink()
    assert main(["grpo", "--config", str(recipe), "--resume_from_checkpoint", "last"]) == 0
    assert steps.read_text().split() == ["2"]  # resumed at step 2, not started again (which would also end equal)
    resumed = AutoModelForImageTextToText.from_pretrained(out).state_dict()
    assert all(torch.equal(resumed[k], final[k]) for k in final)


STEPS_ENV = "MEDVLM_TEST_FAMILY_STEPS"


def length_reward(completions, trainer_state=None, **kwargs):
    """Test-only reward with variance on a random model (completion length), so every step moves the weights; records
    each step it scores."""
    if os.environ.get(STEPS_ENV) and trainer_state is not None:
        with open(os.environ[STEPS_ENV], "a") as fh:
            fh.write(f"{trainer_state.global_step + 1}\n")
    return [len(c if isinstance(c, str) else c[-1]["content"]) / 16.0 for c in completions]
