"""`medvlm-trl reproduce-table1`: each row trained (if it trains) and evaluated, then the table; the tiny profile is
one override set on the real recipes; re-running skips finished rows; a failed row reads `missing`, never a number."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from medvlm_trl import reproduce
from medvlm_trl.model_card import read_model_card
from medvlm_trl.reproduce import make_plan

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _load(path):
    return yaml.safe_load(Path(path).read_text())


@pytest.fixture(scope="module")
def tiny_base():
    """The tiny base model of the phantom world (built once, a few minutes, then cached)."""
    from medvlm_trl.tiny_base import tiny_base_path

    return str(tiny_base_path())


PROFILE = _load(RECIPES / "tiny" / "profile.yaml")


@pytest.mark.parametrize("paper", ["medvlm_r1", "rl_medvqa"])
def test_tiny_profile_is_the_recipe_plus_the_documented_overrides(paper, tmp_path, tiny_base, tiny_lm):
    from medvlm_trl.tiny_base import BASE_MAX_PIXELS

    plan = make_plan(paper, "tiny", tmp_path)
    assert plan.steps
    first_eval_of = {}
    for step in plan.steps:
        run = _load(step.config)
        if step.kind == "train":
            source = _load(RECIPES / paper / f"{step.row}.yaml")
            command = step.argv[0]
            assert run["model_name_or_path"] == tiny_base  # every model of the paper becomes the tiny base model
            assert run["dataset_name"] == "phantom" and run["split_file"] is None and run["test_manifests"] is None
            assert run["min_pixels"] == run["max_pixels"] == BASE_MAX_PIXELS
            assert run["bf16"] is False and run["dtype"] == "float32"
            # Steps and learning rates are the profile's, per command (recipes/tiny/profile.yaml).
            assert run["max_steps"] == PROFILE[command]["max_steps"]
            assert run["learning_rate"] == PROFILE[command]["learning_rate"]
            assert run["output_dir"] == str(tmp_path / "models" / step.row)
            if command == "grpo":
                assert run["use_vllm"] is False and run["num_generations"] == PROFILE["grpo"]["num_generations"]
                # The judge becomes the tiny causal LM where the recipe has one, and stays absent elsewhere.
                assert run.get("semantic_judge_model") == (tiny_lm if source.get("semantic_judge_model") else None)
                # The method is the paper's: rewards, loss preset and KL coefficient are the recipe's.
                for key in ("reward_funcs", "reward_weights", "loss_preset", "beta", "prompt_template"):
                    assert run[key] == source[key], (step.row, key)
            else:
                assert "num_generations" not in run and "use_vllm" not in run  # keys SFT/DPO do not know
            # Everything the override sets do not name is the paper's value.
            named = set(reproduce.TINY_TRAIN_OVERRIDES) | set(reproduce.TINY_COMMAND_OVERRIDES[command])
            untouched = set(source) - named - {"output_dir"}
            assert {k: run[k] for k in untouched} == {k: source[k] for k in untouched}
        else:
            # Every row is tested on every phantom test question (no --limit: the table has no dagger for it).
            assert run["split"] == "phantom" and run["backend"] == "hf" and run["limit"] is None
            trained = (tmp_path / "recipes" / f"{step.row}.yaml").exists()
            if trained:  # a trained row is tested from its output folder, with the prompt it was trained with
                assert run["model"] == str(tmp_path / "models" / step.row)
                train_recipe = _load(tmp_path / "recipes" / f"{step.row}.yaml")
                assert run["prompt"] == train_recipe.get("prompt_template", "r1")
                assert step.same_as is None
            else:
                assert run["model"] == tiny_base
                assert run["prompt"] == _load(RECIPES / paper / f"{step.row}.yaml")["prompt"]
                # Zero-shot rows with the same prompt test the same tiny model: run once, copied to the others.
                first = first_eval_of.setdefault(run["prompt"], step.row)
                assert step.same_as == (None if first == step.row else first)


def test_tiny_profile_refuses_an_unknown_key(tmp_path, monkeypatch):
    monkeypatch.setitem(reproduce.TINY_COMMAND_OVERRIDES, "sft", {"num_generation": 8})  # a typo
    with pytest.raises(reproduce.ReproduceError, match=r"profile.yaml \[sft\]: unknown key\(s\) 'num_generation'"):
        make_plan("medvlm_r1", "tiny", tmp_path)
    bad = tmp_path / "profile.yaml"
    bad.write_text("kind: profile\ngrpo:\n  max_steps: 2\nevals:\n  limit: 3\n")
    with pytest.raises(reproduce.ReproduceError, match=r"unknown section\(s\) \['evals'\]"):
        reproduce.load_tiny_profile(bad)
    bad.write_text("kind: profile\neval:\n  model: tiny:huge\n")
    with pytest.raises(reproduce.ReproduceError, match="tiny:huge: unknown tiny value"):
        reproduce.load_tiny_profile(bad)


def test_full_profile_runs_the_recipes_as_written_under_accelerate(tmp_path):
    plan = make_plan("rl_medvqa", "full", tmp_path)
    train = [s for s in plan.steps if s.kind == "train"]
    assert len(train) == 9
    for step in train:
        run, source = _load(step.config), _load(RECIPES / "rl_medvqa" / f"{step.row}.yaml")
        assert {k: v for k, v in run.items() if k != "output_dir"} == {
            k: v for k, v in source.items() if k != "output_dir"
        }
        line = reproduce.command_line(step, "full")
        assert line.startswith(
            f"accelerate launch --config_file {RECIPES / 'accelerate' / 'zero2.yaml'} -m medvlm_trl.cli"
        )
    # The process the step runs is what `accelerate launch` parses into: the module, its command and recipe.
    from accelerate.commands.launch import launch_command_parser

    cmd = reproduce.step_command(train[0])
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    launch = launch_command_parser().parse_args(cmd[3:])
    assert launch.config_file == str(RECIPES / "accelerate" / "zero2.yaml") and launch.module
    assert [launch.training_script, *launch.training_script_args] == ["medvlm_trl.cli", *train[0].argv]
    evals = {s.row: _load(s.config) for s in plan.steps if s.kind == "eval"}
    assert reproduce.step_command(next(s for s in plan.steps if s.kind == "eval"))[:3] == [
        sys.executable,
        "-m",
        "medvlm_trl.cli",
    ]
    assert evals["grpo_qwen2vl_2b"]["split"] == "splits/pmc_vqa/test.json"
    assert evals["sft_qwen2vl_2b_instruct"]["prompt"] == "simple" and evals["grpo_qwen2vl_2b"]["prompt"] == "study"
    # The protocol names the study's scoring rule for every row (the simple prompt's rows use the letter rule).
    assert {e["answer_rule"] for e in evals.values()} == {"study"}
    assert {e["answer_rule"] for e in map(_load, (s.config for s in make_plan("medvlm_r1", "full", tmp_path / "r1").steps if s.kind == "eval"))} == {"strict"}  # fmt: skip


def test_full_profile_stops_before_anything_when_split_files_are_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no splits/ here
    code = reproduce.main(["--paper", "medvlm_r1", "--profile", "full", "--output-dir", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "splits/medvlm_r1/train.json" in err and "make-split medvlm-r1" in err
    listed = [line.strip() for line in err.splitlines()[1:]]
    assert "grpo_qwen2vl_2b: splits/medvlm_r1/test.json" in listed
    assert len(listed) == len(set(listed))  # a file the training and the eval step both read is listed once
    assert not (tmp_path / "out" / "models").exists() and not (tmp_path / "out" / "results").exists()


def test_training_state_decides_skip_resume_or_restart(tmp_path):
    from medvlm_trl.model_card import write_model_card

    folder = tmp_path / "m"
    assert reproduce._training_state(folder)[0] == "new"
    folder.mkdir()
    (folder / "medvlm_run.json").write_text("{}")  # a run was started and cut off before any checkpoint
    assert reproduce._training_state(folder) == ("restart", {"overwrite_output_dir": True})
    checkpoint = folder / "checkpoint-4"
    checkpoint.mkdir()
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "model.safetensors"):
        (checkpoint / name).write_text("{}")
    state, extra = reproduce._training_state(folder)
    assert state == "resume" and extra["resume_from_checkpoint"] == str(checkpoint)
    (folder / "config.json").write_text("{}")
    assert reproduce._training_state(folder)[0] == "resume"  # weights without our card: not finished
    write_model_card(folder, base_model="b", method="sft", dataset_name="sample", split="train", split_id="1-x")
    assert reproduce._training_state(folder)[0] == "done"


def test_a_failed_row_reads_missing_and_fails_the_command(tmp_path, monkeypatch, capsys):
    # A zero-shot model that cannot be loaded (the tiny profile swaps every zero-shot model, so break that swap).
    monkeypatch.setitem(reproduce.TINY_EVAL_OVERRIDES, "model", str(tmp_path / "no-such-model"))
    out = tmp_path / "runs"
    code = reproduce.main(
        ["--paper", "medvlm_r1", "--profile", "tiny", "--output-dir", str(out), "--rows", "zero_shot_qwen2vl_7b"]
    )
    assert code == 1
    table = (out / "table1_medvlm_r1.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| Qwen2-VL-7B"))
    assert row.count("missing") == 4  # every cell of the failed row, and no number of ours in it
    report = capsys.readouterr().out
    assert "zero_shot_qwen2vl_7b" in report and "failed" in report


MAKE_COMMAND = ["-m", "medvlm_trl.cli", "reproduce-table1", "--paper", "{paper}", "--profile", "tiny"]
# The suite's faster subset of `make reproduce-table1 PROFILE=tiny`: every row, 2 training steps, 24 test questions.
QUICK = {"max_steps": 2, "limit": 24}


@pytest.mark.slow
@pytest.mark.parametrize("paper", ["medvlm_r1", "rl_medvqa"])
def test_make_reproduce_table1_tiny_runs_every_row_end_to_end(paper, tmp_path, tiny_base):
    """What `make reproduce-table1 PAPER=<paper> PROFILE=tiny` runs (after `setup`), in a fresh folder, shortened by
    `--max-steps` and `--limit` (the full run takes minutes per row; README gives its measured times)."""
    import shutil
    import subprocess

    command = [part.format(paper=paper) for part in MAKE_COMMAND]
    if shutil.which("make"):  # the Makefile target runs exactly this command
        repo = Path(__file__).resolve().parents[2]
        dry = subprocess.run(
            ["make", "-n", "-C", str(repo), "reproduce-table1", f"PAPER={paper}", "PROFILE=tiny"],
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(li for li in dry.stdout.splitlines() if "reproduce-table1" in li)
        assert line.split()[1:] == command
    quick = ["--max-steps", str(QUICK["max_steps"]), "--limit", str(QUICK["limit"])]
    done = subprocess.run([sys.executable, *command, *quick], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "runs" / paper / "tiny"
    plan = make_plan(paper, "tiny", out, max_steps=QUICK["max_steps"], limit=QUICK["limit"])
    rows = [r for r in plan.rows if r.command != "computed"]
    limit = QUICK["limit"]
    for row in rows:
        summary = json.loads((out / "results" / row.key / "summary.json").read_text())
        # A limited eval: finished, recorded as limited, never a complete one (the table marks it with a dagger).
        assert summary["finished"] and summary["rows"] == summary["limit"] == limit
        assert not summary["complete"] and summary["split_rows"] == 900  # 300 MRI, 300 CT, 300 X-ray phantoms
        if row.command != "eval":
            card = read_model_card(out / "models" / row.key)
            methods = {"grpo", "dr_grpo"} if row.command == "grpo" else {row.command}
            assert card["method"] in methods and card["base_model"] == tiny_base
            assert card["dataset_name"] == "phantom" and card["split_id"].startswith("600-")  # every MRI phantom
            assert card["results"]["overall"] == summary["overall"]["accuracy"]
            assert card["paper"] == paper
    table = (out / f"table1_{paper}.md").read_text()
    assert table.startswith(reproduce.TINY_BANNER)
    table_lines = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
    assert len(table_lines) == len(plan.rows)
    assert not any("missing" in line for line in table_lines)  # every row ran
    # Every published cell is shown beside ours, and the notes name each row's scoring rule.
    from medvlm_trl.eval.table import load_paper_results

    by_label = {line.strip("|").split("|")[0].strip().rstrip(" †"): line for line in table_lines}
    for spec in load_paper_results()[paper]["rows"]:
        for column, value in spec["paper"].items():
            value = value["mean"] if isinstance(value, dict) else value
            if value is not None:
                assert f"/ {value:.2f}" in by_label[spec["label"]], (spec["label"], column)
    rules = {"study"} if paper == "rl_medvqa" else {"strict"}
    for row in rows:
        summary = json.loads((out / "results" / row.key / "summary.json").read_text())
        prompt = summary["config"]["prompt"]
        assert summary["scoring"] in (rules if prompt != "simple" else {"letter"}), row.key
        notes = [line for line in table.splitlines() if line.startswith(f"- scored by the {summary['scoring']} (")]
        assert len(notes) == 1 and row.label in notes[0], (row.key, summary["scoring"])
    assert f"limited eval (--limit {limit})" in table  # and says it tested a few rows
    assert (out / f"table1_{paper}.png").stat().st_size > 0
    if paper == "rl_medvqa":  # LoRA: merged weights for evaluation, the adapter beside them
        lora = out / "models" / "sft_lora_qwen2vl_2b_instruct"
        assert (lora / "model.safetensors").is_file() and (lora / "adapter" / "adapter_config.json").is_file()
        assert not (lora / "adapter_config.json").exists()
    # Re-running finds every row done and runs nothing.
    assert all(step.skip for step in make_plan(paper, "tiny", out, max_steps=2, limit=limit).steps)
    # ... and a full-length run redoes them: neither a 2-step model nor a limited eval stands in for the full ones.
    assert not any(step.skip for step in make_plan(paper, "tiny", out).steps)
