"""Checkpoints: which `checkpoint-<step>` folders a run holds, which are whole, and which one a resume continues from.

transformers writes a checkpoint in order (weights, optimizer, scheduler, RNG states, then `trainer_state.json`); a
run killed in between leaves a folder that must never be loaded half. Part of `medvlm_trl.runs` (run safety).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from medvlm_trl.errors import RunSafetyError

logger = logging.getLogger(__name__)

# transformers' checkpoint file names (trainer.py), repeated so that checking a folder needs no torch import.
TRAINER_STATE_NAME = "trainer_state.json"
SCHEDULER_NAME = "scheduler.pt"
OPTIMIZER_NAMES = ("optimizer.pt", "optimizer.bin")
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# Values of `resume_from_checkpoint` that mean "the newest complete checkpoint in output_dir" (the field is a string).
RESUME_LAST = {"true", "last", "latest", "yes", "1"}
RESUME_NONE = {"", "false", "no", "none", "0"}


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step of a `checkpoint-<step>` folder name, None for any other name."""
    match = CHECKPOINT_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoint_problems(path: str | os.PathLike) -> list[str]:
    """What a checkpoint lacks for an exact resume (empty when it is whole).

    transformers writes a checkpoint in order: weights, optimizer, scheduler, RNG states, then `trainer_state.json`;
    a run killed in between leaves a folder that `Trainer.train(resume_from_checkpoint=...)` would load half of, and a
    missing optimizer or scheduler file is skipped by transformers without a word (the learning-rate schedule would
    restart). DeepSpeed keeps optimizer state in `global_step*/` folders, FSDP in `optimizer*/` folders.
    """
    path = Path(path)
    if not path.is_dir():
        return [f"{path} is not a folder"]
    problems = []
    state_file = path / TRAINER_STATE_NAME
    if not state_file.is_file():
        problems.append(f"no {TRAINER_STATE_NAME}")
    else:
        try:
            json.loads(state_file.read_text())
        except (OSError, ValueError) as err:
            problems.append(f"unreadable {TRAINER_STATE_NAME} ({err})")
    entries = {entry.name: entry for entry in path.iterdir()}
    has_optimizer = any(name in entries for name in OPTIMIZER_NAMES) or any(
        entry.is_dir() and (name.startswith("global_step") or name.startswith("optimizer"))
        for name, entry in entries.items()
    )
    if not has_optimizer:
        problems.append("no optimizer state (saved with save_only_model=True, or cut short)")
    if SCHEDULER_NAME not in entries and not any(name.startswith("global_step") for name in entries):
        problems.append(f"no {SCHEDULER_NAME}")
    return problems


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The `checkpoint-<step>` folders of a run, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def last_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint that `checkpoint_problems` finds whole; newer, broken ones are named in a warning."""
    for path in reversed(list_checkpoints(output_dir)):
        problems = checkpoint_problems(path)
        if not problems:
            return path
        logger.warning("Skipping %s for resume: %s.", path, "; ".join(problems))
    return None


def resolve_resume(output_dir: str | os.PathLike, resume_from_checkpoint: Any) -> str | None:
    """The checkpoint folder to resume from, or None to start fresh.

    `resume_from_checkpoint` is what the recipe or command line gave (transformers keeps it as a string): unset or
    `false` -> None; `true` / `last` -> the newest complete checkpoint in `output_dir`; anything else is a path, which
    must be a complete checkpoint.
    """
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True or str(resume_from_checkpoint).strip().lower() in RESUME_LAST:
        found = last_complete_checkpoint(output_dir)
        if found is None:
            raise RunSafetyError(
                f"resume_from_checkpoint asks for the last checkpoint, but {output_dir} holds no complete "
                f"checkpoint-* folder (one with {TRAINER_STATE_NAME}, optimizer and scheduler state)"
            )
        return str(found)
    if str(resume_from_checkpoint).strip().lower() in RESUME_NONE:
        return None
    path = Path(str(resume_from_checkpoint))
    problems = checkpoint_problems(path)
    if problems:
        raise RunSafetyError(
            f"cannot resume from {path}: {'; '.join(problems)}. Resuming from it would restart the optimizer or the "
            f"learning-rate schedule; pick an earlier checkpoint-*, or `resume_from_checkpoint: last` to let the "
            f"newest complete one be found"
        )
    return str(path)


def check_steps_left(checkpoint: str | os.PathLike, training_args: Any) -> None:
    """Refuse to resume a checkpoint that is already at `max_steps`: transformers would train one step past the end
    (at the schedule's last learning rate, which a constant schedule keeps above 0) and save it as the run's model."""
    max_steps = getattr(training_args, "max_steps", -1)
    try:
        step = int(json.loads((Path(checkpoint) / TRAINER_STATE_NAME).read_text()).get("global_step", 0))
    except (OSError, ValueError, TypeError):
        return  # `checkpoint_problems` has vouched for the file; a step it lacks is transformers' to handle
    if max_steps is not None and max_steps > 0 and step >= max_steps:
        raise RunSafetyError(
            f"{checkpoint} is at step {step} and this run stops at max_steps {max_steps}: nothing is left to train "
            f"(resuming would train a step past the end); the run's model is in its output_dir. To train longer, "
            f"resume with a higher --max_steps and --allow_changed_settings max_steps"
        )
