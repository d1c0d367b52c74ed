"""Run safety, by its old name: everything of `medvlm_trl.runs` (see its docstring), importable from here as before."""

from __future__ import annotations

from medvlm_trl.configs import RunSafetyArguments
from medvlm_trl.errors import RunSafetyError
from medvlm_trl.runs.callback import RunInfoCallback, _dataset_ids
from medvlm_trl.runs.checkpoints import (
    CHECKPOINT_RE,
    OPTIMIZER_NAMES,
    RESUME_LAST,
    RESUME_NONE,
    SCHEDULER_NAME,
    TRAINER_STATE_NAME,
    check_steps_left,
    checkpoint_problems,
    checkpoint_step,
    last_complete_checkpoint,
    list_checkpoints,
    resolve_resume,
)
from medvlm_trl.runs.output_dir import RUN_MARKERS, check_output_dir, empty_dir, looks_like_run_dir
from medvlm_trl.runs.prepare import check_training_length, prepare_run
from medvlm_trl.runs.record import (
    _ABSENT,
    _PREPARED,
    FREE_SETTING_PREFIXES,
    FREE_SETTINGS,
    RUN_FILE,
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    SPLIT_ID_FIELDS,
    SPLIT_ID_OPTIONAL_FIELDS,
    SPLIT_MANIFEST_FORMAT,
    VERSION_PACKAGES,
    build_run_record,
    changed_settings,
    check_resume_compatible,
    file_sha256,
    is_free_setting,
    library_versions,
    read_run_record,
    recipe_info,
    recipe_path,
    rows_sha256,
    setting_changes,
    split_info,
    training_settings,
    write_run_record,
)
from medvlm_trl.runs.weights import (
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    checkpoint_weight_files,
    restore_checkpoint_weights,
)

__all__ = [
    "CHECKPOINT_RE", "FREE_SETTINGS", "FREE_SETTING_PREFIXES", "OPTIMIZER_NAMES", "RESUME_LAST", "RESUME_NONE",
    "RUN_FILE", "RUN_FORMAT", "RUN_FORMAT_VERSION", "RUN_MARKERS", "SAFE_WEIGHTS_INDEX_NAME", "SAFE_WEIGHTS_NAME",
    "SCHEDULER_NAME", "SPLIT_ID_FIELDS", "SPLIT_ID_OPTIONAL_FIELDS", "SPLIT_MANIFEST_FORMAT", "TRAINER_STATE_NAME",
    "VERSION_PACKAGES", "_ABSENT", "_PREPARED", "_dataset_ids", "RunInfoCallback", "RunSafetyArguments",
    "RunSafetyError", "build_run_record", "changed_settings", "check_output_dir", "check_resume_compatible",
    "check_steps_left", "check_training_length", "checkpoint_problems", "checkpoint_step", "checkpoint_weight_files",
    "empty_dir", "file_sha256", "is_free_setting", "last_complete_checkpoint", "library_versions", "list_checkpoints",
    "looks_like_run_dir", "prepare_run", "read_run_record", "recipe_info", "recipe_path", "resolve_resume",
    "restore_checkpoint_weights", "rows_sha256", "setting_changes", "split_info", "training_settings",
    "write_run_record",
]  # fmt: skip
