"""Two processes give the GRPO step that one process gives (issue 8, item 1): `accelerate launch` of `medvlm-trl grpo`
on the tiny Qwen2-VL, on CPU with the gloo backend.

The RL-MedVQA study (Zhu et al., arXiv:2505.13973, Table S2 and appendix A) trains on 4 A100s; MedVLM-R1's
objective (Pan et al., section 3) normalises each reward within its group of G completions. What TRL 1.16 promises
and what is checked here, on the same recipe, seed and global batch (3 questions x G=4 = 12 completions per step; one
process holds all 12, two processes 6 each):

- Prompts: every process builds the same `RepeatSampler` with the same seed, and accelerate hands process r the r-th
  contiguous slice of each global batch. So rank 0's rows followed by rank 1's are, step by step, exactly the rows one
  process sees. With 6 completions per process, the middle question's group of 4 is split 2 + 2 across the processes.
- Rewards: each process scores only its own completions; `_calculate_rewards` gathers them in process order, so the
  logged mean and std of a reward that depends only on the row are the same numbers with one process or two.
- Advantages: computed from the gathered rewards over whole groups, then sliced back per process. The test recomputes
  (r - mean_group) / (std_group + 1e-4) from the rewards both processes recorded and checks each process's slice,
  including the group that spans both.

The completions themselves are not compared between one and two processes: sampling draws a different stream of
random numbers for a batch of 12 than for two batches of 6, so only row-determined quantities can match exactly.

This file is also the script the launched processes run (`__main__` below): it records, per process, the rows, the
rewards and the advantages of every step, then runs the real entry point `medvlm_trl.grpo.main`.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "tiny" / "grpo.yaml"
RECORD_ENV = "MEDVLM_TEST_RECORD_DIR"
G = 4  # completions per question
QUESTIONS_PER_STEP = 3
MAX_STEPS = 2
EPSILON = 1e-4  # TRL's guard in (r - mean) / (std + 1e-4)


# --- what the launched processes run -------------------------------------------------------------------------------


def _record(kind: str, step: int, ids: list, values: list, **extra) -> None:
    folder = os.environ.get(RECORD_ENV)
    if not folder:
        return
    rank = int(os.environ.get("RANK", "0"))
    line = {"kind": kind, "rank": rank, "step": step, "ids": [str(i) for i in ids], "values": values, **extra}
    with open(Path(folder) / f"rank{rank}.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")


def _text(completion) -> str:
    return completion if isinstance(completion, str) else completion[-1]["content"]


def row_reward(completions, trainer_state=None, **columns):
    """Test-only reward that depends on the row alone (a number from its id), so it is the same in any process."""
    ids = columns["id"]
    values = [int(hashlib.sha256(str(row_id).encode()).hexdigest()[:6], 16) % 10 / 10 for row_id in ids]
    _record("row_reward", trainer_state.global_step + 1, ids, values)
    return values


def length_reward(completions, trainer_state=None, **columns):
    """Test-only reward with variance within a group on a random model: the completion's length in characters."""
    texts = [_text(c) for c in completions]
    values = [float(len(t)) for t in texts]
    _record("length_reward", trainer_state.global_step + 1, columns["id"], values, completions=texts)
    return values


def _launched_main() -> int:
    """Record each process's advantages (TRL slices them per process), then run `medvlm-trl grpo`."""
    from medvlm_trl import grpo
    from medvlm_trl.trainer import MedVLMGRPOTrainer

    score = MedVLMGRPOTrainer._generate_and_score_completions

    def recording(self, inputs):
        output = score(self, inputs)
        advantages = output["advantages"].reshape(-1).tolist()
        _record("advantages", self.state.global_step + 1, [row["id"] for row in inputs], advantages)
        return output

    MedVLMGRPOTrainer._generate_and_score_completions = recording
    return grpo.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_launched_main())


# --- the tests ------------------------------------------------------------------------------------------------------


def launch(tmp_path: Path, tiny_vlm: str, num_processes: int, name: str) -> tuple[Path, Path]:
    """`accelerate launch` this file over `num_processes` CPU processes; returns (output dir, record dir)."""
    out, records = tmp_path / name / "out", tmp_path / name / "records"
    records.mkdir(parents=True)
    per_device = G * QUESTIONS_PER_STEP // num_processes
    # `--multi_gpu` selects torchrun (one process per rank); ACCELERATE_USE_CPU then makes transformers set up
    # gloo on CPU. `--cpu` would pick accelerate's simple launcher, which starts one process whatever the count.
    distributed = ["--multi_gpu", "--main_process_port", "0"] if num_processes > 1 else ["--cpu"]
    command = [
        sys.executable, "-m", "accelerate.commands.launch", *distributed,
        "--num_processes", str(num_processes), "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", str(Path(__file__).resolve()),
        "--config", str(RECIPE),
        "--model_name_or_path", tiny_vlm,
        "--output_dir", str(out),
        "--reward_funcs", "tests.runs.test_distributed.row_reward", "tests.runs.test_distributed.length_reward",
        "--reward_weights", "1.0", "1.0",
        "--num_generations", str(G),
        "--per_device_train_batch_size", str(per_device),
        "--gradient_accumulation_steps", "1",
        "--max_steps", str(MAX_STEPS),
        "--save_strategy", "steps", "--save_steps", str(MAX_STEPS),
        "--logging_steps", "1",
    ]  # fmt: skip
    env = {**os.environ, RECORD_ENV: str(records), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"{num_processes}-process run failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return out, records


def read_records(records: Path) -> dict[tuple[str, int, int], dict]:
    """(kind, step, rank) -> the record; each kind is recorded once per step and process."""
    found = {}
    for path in sorted(records.glob("rank*.jsonl")):
        for line in path.read_text().splitlines():
            item = json.loads(line)
            key = (item["kind"], item["step"], item["rank"])
            assert key not in found, f"{key} recorded twice"
            found[key] = item
    return found


def gathered(records: dict, kind: str, step: int, ranks: int, field: str = "values") -> list:
    """What `gather` makes of a per-process quantity: rank 0's part, then rank 1's, ..."""
    return [value for rank in range(ranks) for value in records[(kind, step, rank)][field]]


def log_history(out: Path) -> dict[int, dict]:
    state = json.loads((out / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    return {entry["step"]: entry for entry in state["log_history"] if "loss" in entry}


def group_advantages(rewards: list[float]) -> list[float]:
    """MedVLM-R1, section 3 (TRL's `scale_rewards="group"`): (r - mean) / (std + eps) within each group of G."""
    advantages = []
    for start in range(0, len(rewards), G):
        group = rewards[start : start + G]
        mean, std = statistics.fmean(group), statistics.stdev(group)  # TRL's nanstd is the sample std too
        advantages += [(r - mean) / (std + EPSILON) for r in group]
    return advantages


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_vlm):
    tmp_path = tmp_path_factory.mktemp("distributed")
    return {n: launch(tmp_path, tiny_vlm, n, f"np{n}") for n in (1, 2)}


@pytest.mark.slow
def test_both_processes_generate_score_and_train_to_the_end(runs):
    out, records_dir = runs[2]
    records = read_records(records_dir)
    for step in range(1, MAX_STEPS + 1):
        for rank in (0, 1):
            scored = records[("length_reward", step, rank)]
            assert len(scored["completions"]) == G * QUESTIONS_PER_STEP // 2
            assert all(text for text in scored["completions"]), "a process generated an empty completion"
    state = json.loads((out / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS
    record = json.loads((out / f"checkpoint-{MAX_STEPS}" / "medvlm_run.json").read_text())
    assert record["world_size"] == 2 and record["global_step"] == MAX_STEPS
    assert (out / "model.safetensors").is_file()


@pytest.mark.slow
def test_each_process_gets_its_slice_of_the_global_batch_one_process_sees(runs):
    one, two = read_records(runs[1][1]), read_records(runs[2][1])
    for step in range(1, MAX_STEPS + 1):
        expected = one[("row_reward", step, 0)]["ids"]
        assert len(expected) == G * QUESTIONS_PER_STEP
        assert gathered(two, "row_reward", step, 2, "ids") == expected
        # Whole groups of G in a row, three questions a step; the middle one is split 2 + 2 across the processes.
        questions = expected[::G]
        assert expected == [q for q in questions for _ in range(G)] and len(set(questions)) == QUESTIONS_PER_STEP
        assert two[("row_reward", step, 0)]["ids"][-2:] == two[("row_reward", step, 1)]["ids"][:2]
    steps_one = [one[("row_reward", s, 0)]["ids"][0] for s in range(1, MAX_STEPS + 1)]
    assert len(set(steps_one)) == MAX_STEPS, "each step draws new questions"


@pytest.mark.slow
def test_rewards_are_gathered_so_the_logged_statistics_match_one_process(runs):
    out_one, (out_two, rec_two) = runs[1][0], runs[2]
    logged_one, logged_two = log_history(out_one), log_history(out_two)
    records = read_records(rec_two)
    differs_from_local = []
    for step in range(1, MAX_STEPS + 1):
        for key in ("rewards/row_reward/mean", "rewards/row_reward/std"):
            assert logged_two[step][key] == pytest.approx(logged_one[step][key], abs=1e-6), (step, key)
        values = gathered(records, "row_reward", step, 2)
        assert logged_two[step]["rewards/row_reward/mean"] == pytest.approx(statistics.fmean(values), abs=1e-6)
        assert logged_two[step]["rewards/row_reward/std"] == pytest.approx(statistics.stdev(values), abs=1e-6)
        local = records[("row_reward", step, 0)]["values"]
        differs_from_local.append(abs(statistics.fmean(local) - statistics.fmean(values)) > 1e-6)
    # Not vacuous: rank 0's own mean differs from the global one, so an ungathered mean would have been caught.
    assert any(differs_from_local)


@pytest.mark.slow
@pytest.mark.parametrize("num_processes", [1, 2])
def test_advantages_are_computed_over_whole_groups_then_sliced(runs, num_processes):
    records = read_records(runs[num_processes][1])
    split_group_matters = []
    for step in range(1, MAX_STEPS + 1):
        rewards = [
            a + b
            for a, b in zip(
                gathered(records, "row_reward", step, num_processes),
                gathered(records, "length_reward", step, num_processes),
            )
        ]
        expected = group_advantages(rewards)
        assert gathered(records, "advantages", step, num_processes) == pytest.approx(expected, abs=1e-4)
        if num_processes == 2:
            # Rank 0 holds 2 of the middle question's 4 completions; normalised alone they would get other values.
            middle = rewards[G : 2 * G]
            if statistics.stdev(middle) > 0:
                alone = middle[:2]
                local = [(r - statistics.fmean(alone)) / (statistics.stdev(alone) + EPSILON) for r in alone]
                split_group_matters.append(local != pytest.approx(expected[G : G + 2], abs=1e-3))
    if num_processes == 2:
        assert any(split_group_matters), "no step had a split group with reward variance; the check proved nothing"
