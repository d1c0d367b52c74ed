"""A GRPO run killed after its second checkpoint resumes and ends where an uninterrupted run ends (issue 8, item 3).

MedVLM-R1 trains 300 GRPO steps (Pan et al., section 4.1); the RL-MedVQA study trains for hours on several GPUs. A
run killed part-way must continue, not restart and not repeat steps. The test kills a real `medvlm-trl grpo` process
with SIGKILL right after checkpoint-2 is on disk (a test-only reward holds step 3 until the kill, so the timing is
exact), resumes it with `--resume_from_checkpoint last`, and compares with the same command run without a break:

- the log has each of steps 1..5 once, and the final global step is max_steps;
- the resumed process starts at step 3 and trains, step by step, on the rows the uninterrupted run trains on (the
  sampler is re-seeded and transformers skips the batches already trained);
- the learning rate of every step equals the uninterrupted run's (a restarted scheduler would start again at the
  peak learning rate);
- the final weights equal the uninterrupted run's. With the data order and the RNG states restored
  (`rng_state.pth`), they do only if the AdamW moments were restored from `optimizer.pt` too: the step-3 update of a
  fresh AdamW differs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "tiny" / "grpo.yaml"
RECORD_ENV = "MEDVLM_TEST_RECORD_FILE"
STALL_ENV = "MEDVLM_TEST_STALL_AFTER_STEP"
MAX_STEPS = 5
KILL_AFTER = 2  # checkpoint-2 is the last one on disk when the process is killed
TIMEOUT = 300


def recording_reward(completions, trainer_state=None, **columns):
    """Test-only reward with variance on a random model (completion length), so every step has a gradient; records
    the step and its rows, and when asked, holds the step after a given one until the process is killed."""
    step = trainer_state.global_step + 1
    stall_after = os.environ.get(STALL_ENV)
    if stall_after and step > int(stall_after):
        time.sleep(3600)  # the test kills the process here; the sleep only bounds a forgotten process
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    with open(os.environ[RECORD_ENV], "a") as fh:
        fh.write(json.dumps({"step": step, "ids": [str(i) for i in columns["id"]]}) + "\n")
    return [len(t) / 16.0 for t in texts]


def grpo_command(tiny_vlm: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "medvlm_trl.cli", "grpo",
        "--config", str(RECIPE),
        "--model_name_or_path", tiny_vlm,
        "--output_dir", str(out),
        "--overwrite_output_dir", "false",  # the tiny recipe overwrites (a demo); a resumed run must not
        "--reward_funcs", "format", "tests.runs.test_resume.recording_reward",
        "--reward_weights", "1.0", "1.0",
        "--max_steps", str(MAX_STEPS),
        "--learning_rate", "1.0e-3",
        "--lr_scheduler_type", "linear",
        "--save_strategy", "steps", "--save_steps", "1",
        "--logging_steps", "1",
        *extra,
    ]  # fmt: skip


def run_env(record_file: Path, stall: bool = False) -> dict:
    env = {**os.environ, RECORD_ENV: str(record_file), "OMP_NUM_THREADS": "1"}
    env.pop(STALL_ENV, None)
    if stall:
        env[STALL_ENV] = str(KILL_AFTER)
    return env


def run_to_end(command: list[str], env: dict) -> None:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"run failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


def run_and_kill_after_checkpoint(command: list[str], env: dict, checkpoint: Path) -> None:
    """Start the run, wait until `checkpoint` is complete (its run record is written last, by `on_save`), SIGKILL."""
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (checkpoint / "medvlm_run.json").is_file():
            if process.poll() is not None:
                pytest.fail(f"run ended before {checkpoint.name} (exit {process.returncode}):\n{process.stdout.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {checkpoint.name} after {TIMEOUT} s")
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the session started above holds this run only
        process.wait(timeout=60)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL, "the run was meant to be killed, not to finish"


def steps_and_rows(record_file: Path) -> dict[int, list[str]]:
    steps: dict[int, list[str]] = {}
    for line in record_file.read_text().splitlines():
        item = json.loads(line)
        assert item["step"] not in steps, f"step {item['step']} was scored twice"
        steps[item["step"]] = item["ids"]
    return steps


def trained_steps(out: Path) -> tuple[int, list[dict]]:
    state = json.loads((out / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    return state["global_step"], [entry for entry in state["log_history"] if "loss" in entry]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_vlm):
    tmp = tmp_path_factory.mktemp("resume")
    interrupted, straight = tmp / "interrupted", tmp / "straight"
    first, second, reference = tmp / "first.jsonl", tmp / "second.jsonl", tmp / "reference.jsonl"
    run_and_kill_after_checkpoint(
        grpo_command(tiny_vlm, interrupted), run_env(first, stall=True), interrupted / f"checkpoint-{KILL_AFTER}"
    )
    killed_with = sorted(p.name for p in interrupted.glob("checkpoint-*"))
    run_to_end(grpo_command(tiny_vlm, interrupted, "--resume_from_checkpoint", "last"), run_env(second))
    run_to_end(grpo_command(tiny_vlm, straight), run_env(reference))
    return {
        "interrupted": interrupted,
        "straight": straight,
        "killed_with": killed_with,
        "first": steps_and_rows(first),
        "second": steps_and_rows(second),
        "reference": steps_and_rows(reference),
    }


@pytest.mark.slow
def test_killed_after_checkpoint_2_then_resumed_ends_at_max_steps_without_repeating_a_step(runs):
    assert runs["killed_with"] == ["checkpoint-1", "checkpoint-2"]
    assert sorted(runs["first"]) == [1, 2]  # step 3 was held until the kill, never scored
    assert sorted(runs["second"]) == [3, 4, 5]  # the resumed process starts after the checkpoint
    global_step, logged = trained_steps(runs["interrupted"])
    assert global_step == MAX_STEPS
    assert [entry["step"] for entry in logged] == list(range(1, MAX_STEPS + 1))


@pytest.mark.slow
def test_resumed_run_trains_on_the_rows_the_uninterrupted_run_trains_on(runs):
    resumed = {**runs["first"], **runs["second"]}
    assert resumed == runs["reference"]
    assert len({tuple(rows) for rows in resumed.values()}) == MAX_STEPS  # each step has its own rows


@pytest.mark.slow
def test_learning_rate_schedule_continues_instead_of_restarting(runs):
    _, resumed = trained_steps(runs["interrupted"])
    _, straight = trained_steps(runs["straight"])
    rates = [entry["learning_rate"] for entry in resumed]
    assert rates == pytest.approx([entry["learning_rate"] for entry in straight], rel=1e-9)
    assert rates == sorted(rates, reverse=True) and rates[KILL_AFTER] < rates[0]  # linear decay, no restart


@pytest.mark.slow
def test_resumed_weights_equal_the_uninterrupted_runs(runs):
    import torch

    resumed, straight = weights(runs["interrupted"]), weights(runs["straight"])
    assert resumed.keys() == straight.keys()
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    # Not vacuous: the steps after the kill moved the weights, so a wrong step-3 update would have shown.
    at_kill = weights(runs["interrupted"] / f"checkpoint-{KILL_AFTER}")
    assert any(not torch.equal(at_kill[name], resumed[name]) for name in resumed)


@pytest.mark.slow
def test_run_record_says_the_run_was_resumed(runs):
    out = runs["interrupted"]
    record = json.loads((out / "medvlm_run.json").read_text())
    assert record["resumed_from"] == str(out / f"checkpoint-{KILL_AFTER}")
    assert record["global_step"] == MAX_STEPS
    assert [entry["resumed_from"] for entry in record["history"]] == [None]
    for step in range(1, MAX_STEPS + 1):
        saved = json.loads((out / f"checkpoint-{step}" / "medvlm_run.json").read_text())
        assert saved["global_step"] == step


def readme_resume_commands() -> list[str]:
    """The commands of README's resume example (the code block after "With the tiny recipe")."""
    text = (ROOT / "README.md").read_text()
    block = text.split("With the tiny recipe", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_readmes_resume_commands_work_as_written(tmp_path):
    """Issue 17: README's resume command failed with the tiny recipe it names ("both resume_from_checkpoint and
    overwrite_output_dir are set", the recipe overwrites). Every command runs as written, from a folder holding the
    recipes; the first is killed after its first checkpoint, as README's comment says. Then the finished run is not
    resumed again, a resume that changes what is trained is refused, and a named change trains on and is recorded."""
    import shlex

    commands = readme_resume_commands()
    assert [c.split()[:2] for c in commands] == [["medvlm-trl", "make-tiny-model"], ["medvlm-trl", "grpo"]] + [
        ["medvlm-trl", "grpo"]
    ]
    assert commands[2].endswith("--resume_from_checkpoint last")
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    binary = str(Path(sys.executable).parent / "medvlm-trl")

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([binary, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)

    made = run(*shlex.split(commands[0])[1:])
    assert made.returncode == 0, made.stderr[-3000:]
    out = tmp_path / "runs" / "tiny" / "grpo"
    first = subprocess.Popen(
        [binary, *shlex.split(commands[1])[1:]], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (out / "checkpoint-1" / "medvlm_run.json").is_file():  # written last, by `on_save`
            assert first.poll() is None, f"the run ended before checkpoint-1 (exit {first.returncode})"
            assert time.monotonic() < deadline, f"no checkpoint-1 after {TIMEOUT} s"
            time.sleep(0.05)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)  # the session started above holds this run only
        first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL and not (out / "model.safetensors").exists()

    resumed = run(*shlex.split(commands[2])[1:])
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    record = json.loads((out / "medvlm_run.json").read_text())
    assert record["resumed_from"] == str(Path("runs/tiny/grpo/checkpoint-1")) and record["global_step"] == 2
    assert [entry["resumed_from"] for entry in record["history"]] == [None]  # the first run was kept, not deleted
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()

    again = run(*shlex.split(commands[2])[1:])  # finished: transformers would train a step 3 past max_steps
    assert again.returncode == 2 and "nothing is left to train" in again.stderr, again.stderr[-3000:]
    changed = run(*shlex.split(commands[2])[1:], "--max_pixels", "12544")
    assert changed.returncode == 2
    assert "medvlm-trl grpo: error: cannot resume" in changed.stderr and "max_pixels 50176 -> 12544" in changed.stderr

    # A deliberate change, named: the run trains on to step 3, and its record and card say so.
    extended = run(*shlex.split(commands[2])[1:], "--max_steps", "3", "--allow_changed_settings", "max_steps")
    assert extended.returncode == 0, extended.stderr[-4000:]
    change = {"key": "max_steps", "from": 2, "to": 3, "at_step": 2, "checkpoint": "runs/tiny/grpo/checkpoint-2"}
    record = json.loads((out / "medvlm_run.json").read_text())
    assert record["global_step"] == 3 and record["setting_changes"] == [change]
    assert json.loads((out / "checkpoint-3" / "medvlm_run.json").read_text())["setting_changes"] == [change]
    card = (out / "README.md").read_text()
    assert "| `max_steps` | `2` | `3` | 2 |" in card and "| `max_steps` | `3` |" in card
