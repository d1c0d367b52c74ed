"""`RunInfoCallback`: the run record into every checkpoint, and on a resume the rows and weights checked. Part of
`medvlm_trl.runs`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medvlm_trl.errors import RunSafetyError
from medvlm_trl.runs.record import _PREPARED, _now, build_run_record, read_run_record, rows_sha256, write_run_record
from medvlm_trl.runs.weights import restore_checkpoint_weights

logger = logging.getLogger(__name__)


class RunInfoCallback(TrainerCallback):
    """Writes `medvlm_run.json` next to every checkpoint and keeps the output dir's copy at the latest step; on a
    resume, checks that training continues from the checkpoint's rows and weights.

    The record is the one `prepare_run` made in this process for the same output dir; a trainer built in Python
    without an entry point gets a record from its arguments alone (no recipe, no command line). At train start it
    adds a hash of the training row ids. When `args.resume_from_checkpoint` names a checkpoint (as `prepare_run`
    leaves it), rows that differ from the checkpoint's are refused, and weights transformers failed to load are
    loaded (`restore_checkpoint_weights`), before the first step.
    """

    def __init__(self, script_args: Any = None):
        self.script_args = script_args
        self.record: dict | None = None

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        prepared = _PREPARED.get(os.path.abspath(args.output_dir))
        record = dict(prepared) if prepared is not None else build_run_record(args, self.script_args, argv=[])
        record["split"] = dict(record["split"])
        ids = _dataset_ids(getattr(train_dataloader, "dataset", None))
        if ids is not None:
            record["split"]["rows_sha256"] = rows_sha256(ids)
            record["split"]["num_rows"] = len(ids)
        checkpoint = args.resume_from_checkpoint
        saved = read_run_record(checkpoint) if isinstance(checkpoint, str) and os.path.isdir(checkpoint) else None
        old_rows = ((saved or {}).get("split") or {}).get("rows_sha256")
        new_rows = record["split"].get("rows_sha256")
        if old_rows and new_rows and old_rows != new_rows:  # every process raises, so none waits on the others
            raise RunSafetyError(
                f"{checkpoint} was trained on other rows than this run loads (row-id hash {old_rows[:12]} vs "
                f"{new_rows[:12]}); resume with the same data, or start a new run in another output_dir"
            )
        if isinstance(checkpoint, str) and os.path.isdir(checkpoint):
            self._check_resumed_weights(model, checkpoint)
        self.record = record
        if state.is_world_process_zero:
            write_run_record(args.output_dir, {**record, "global_step": state.global_step})

    @staticmethod
    def _check_resumed_weights(model, checkpoint: str) -> None:
        if model is None:
            return
        restored = restore_checkpoint_weights(model, checkpoint)
        if restored:
            logger.warning(
                "Resuming from %s: transformers left %d weights at their initial values (checkpoint saved under the "
                "model's original key names, huggingface/transformers#43701); loaded them from the checkpoint: %s",
                checkpoint,
                len(restored),
                ", ".join(restored[:4]) + (", ..." if len(restored) > 4 else ""),
            )

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.record is None:
            return
        record = {**self.record, "global_step": state.global_step, "saved_at": _now()}
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            write_run_record(checkpoint, record)
        write_run_record(args.output_dir, record)

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.record is None:
            return
        write_run_record(args.output_dir, {**self.record, "global_step": state.global_step, "finished_at": _now()})


def _dataset_ids(dataset: Any) -> list | None:
    """The `id` column of a `datasets.Dataset` (None when there is none, e.g. an iterable dataset)."""
    names = getattr(dataset, "column_names", None)
    if not names or "id" not in names:
        return None
    return list(dataset["id"])
