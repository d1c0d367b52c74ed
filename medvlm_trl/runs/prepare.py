"""`prepare_run`: the run-safety rules applied by every training command before the model is loaded (a run that would
train nothing refused, the output dir claimed, the resume resolved and checked, the run record written). Part of
`medvlm_trl.runs`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medvlm_trl.errors import RunSafetyError
from medvlm_trl.runs.checkpoints import check_steps_left, resolve_resume
from medvlm_trl.runs.output_dir import check_output_dir, empty_dir
from medvlm_trl.runs.record import (
    _PREPARED,
    RUN_FILE,
    _summary,
    build_run_record,
    check_resume_compatible,
    read_run_record,
    write_run_record,
)

logger = logging.getLogger(__name__)


def check_training_length(training_args: Any) -> None:
    """Refuse a run that would train nothing and then save its model as trained: `max_steps: 0` (transformers runs
    one step at learning rate 0), zero or negative epochs, an empty batch or no accumulation step."""
    max_steps = getattr(training_args, "max_steps", -1)
    if max_steps is not None and (max_steps == 0 or max_steps < -1):
        raise RunSafetyError(
            f"max_steps must be a positive number of optimizer steps (or -1 to train for num_train_epochs), got "
            f"{max_steps}: such a run would save an untrained model as a trained one"
        )
    epochs = getattr(training_args, "num_train_epochs", 1)
    if (max_steps is None or max_steps < 0) and epochs is not None and not epochs > 0:
        raise RunSafetyError(
            f"num_train_epochs must be positive when max_steps is unset, got {epochs}: such a run would save an "
            f"untrained model as a trained one"
        )
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        value = getattr(training_args, name, 1)
        if value is not None and value < 1:
            raise RunSafetyError(f"{name} must be at least 1, got {value}")


def _on_command_line(argv: Sequence[str], name: str) -> bool:
    flag = f"--{name}"
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def prepare_run(
    training_args: Any, script_args: Any = None, argv: Sequence[str] | None = None, model_args: Any = None
) -> dict:
    """Apply the three rules before anything is loaded; returns this invocation's run record.

    Every process checks (read-only, so all reach the same decision and all stop on a refusal); then the main
    process empties the folder when overwriting and writes the record, while the others wait. On return,
    `training_args.resume_from_checkpoint` is the resolved checkpoint folder (or None), which is what
    `Trainer.train(resume_from_checkpoint=...)` takes. `argv` is the command line (the recipe comes from its
    `--config`); `model_args` is `trl.ModelConfig`, whose settings a resume must keep too.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    check_training_length(training_args)
    output_dir = training_args.output_dir
    overwrite = bool(getattr(training_args, "overwrite_output_dir", False))
    checkpoint = resolve_resume(output_dir, training_args.resume_from_checkpoint)
    if (
        checkpoint is not None
        and overwrite
        and _on_command_line(argv, "resume_from_checkpoint")
        and not _on_command_line(argv, "overwrite_output_dir")
    ):
        # The recipe overwrites (a demo recipe replaces its last run); the command line asks to resume: the explicit
        # request wins, and it is the one that deletes nothing.
        logger.warning("--resume_from_checkpoint given: ignoring the recipe's overwrite_output_dir: true.")
        overwrite = training_args.overwrite_output_dir = False
    action = check_output_dir(output_dir, resume=checkpoint is not None, overwrite=overwrite)
    training_args.resume_from_checkpoint = checkpoint

    record = build_run_record(training_args, script_args, argv, model_args)
    record["resumed_from"] = checkpoint
    allowed = getattr(training_args, "allow_changed_settings", None)
    if checkpoint is not None:
        check_resume_compatible(checkpoint, record, allowed)
        check_steps_left(checkpoint, training_args)
    elif allowed:
        logger.warning("allow_changed_settings is set but this run does not resume: nothing to allow.")
    if record["trust_remote_code"]:
        logger.warning("trust_remote_code is on: code shipped with the model or processor will run on this machine.")

    state = getattr(training_args, "distributed_state", None)
    if state is not None:  # nobody may see the folder change before everyone has decided about it
        state.wait_for_everyone()
    if training_args.process_index == 0:
        if action == "overwrite":
            logger.warning("overwrite_output_dir: deleting the earlier run in %s.", output_dir)
            empty_dir(output_dir)
        previous = read_run_record(output_dir) if action == "resume" else None
        if previous is not None:
            record["history"] = [*previous.get("history", []), _summary(previous)]
        write_run_record(output_dir, record)
    if state is not None:
        state.wait_for_everyone()
    _PREPARED[os.path.abspath(output_dir)] = record
    logger.info("Run record written to %s (%s).", Path(output_dir) / RUN_FILE, action)
    return record
