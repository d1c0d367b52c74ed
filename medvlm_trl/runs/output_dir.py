"""The output dir: one run per folder. A folder that holds a run is resumed or overwritten only when asked; one that
holds something else is never emptied. Part of `medvlm_trl.runs` (run safety).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from medvlm_trl.errors import RunSafetyError
from medvlm_trl.runs.checkpoints import TRAINER_STATE_NAME, list_checkpoints
from medvlm_trl.runs.record import RUN_FILE

# What a folder holds once any training run (ours, TRL's or transformers') has written into it.
RUN_MARKERS = (RUN_FILE, TRAINER_STATE_NAME, "training_args.bin", "config.json", "adapter_config.json")


def looks_like_run_dir(path: str | os.PathLike) -> bool:
    """Whether a folder holds (part of) a training run: a checkpoint, trainer state, saved model or our run record."""
    path = Path(path)
    if not path.is_dir():
        return False
    return bool(list_checkpoints(path)) or any((path / name).exists() for name in RUN_MARKERS)


def check_output_dir(output_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> str:
    """Decide what a run may do with `output_dir`: "fresh" (missing or empty), "resume" or "overwrite".

    Read-only, so that every process of a distributed run can call it and reach the same decision; `prepare_run`
    does the emptying, on the main process only.
    """
    if resume and overwrite:
        raise RunSafetyError(
            "both resume_from_checkpoint and overwrite_output_dir are set: resume continues the run in output_dir, "
            "overwrite deletes it; choose one"
        )
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise RunSafetyError(f"output_dir {path} exists and is not a folder")
    entries = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if not entries:
        return "fresh"
    if resume:
        return "resume"
    shown = ", ".join(entries[:5]) + (f", ... ({len(entries)} entries)" if len(entries) > 5 else "")
    if not looks_like_run_dir(path):
        raise RunSafetyError(
            f"output_dir {path} is not empty ({shown}) and holds no training run; choose an empty or new folder "
            f"(overwrite_output_dir never empties a folder that is not a run's)"
        )
    if overwrite:
        return "overwrite"
    raise RunSafetyError(
        f"output_dir {path} already holds a run ({shown}). Pass `--resume_from_checkpoint last` to continue it, "
        f"`--overwrite_output_dir true` to delete it and start again, or choose another output_dir"
    )


def empty_dir(path: str | os.PathLike) -> None:
    """Delete everything inside `path`, keeping the folder itself."""
    for entry in Path(path).iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
