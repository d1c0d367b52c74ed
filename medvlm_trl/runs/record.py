"""The run record, `medvlm_run.json`: what made a run and each of its checkpoints (recipe and its SHA-256, command
line, split id, row-id hash, library versions, world size, seed, every setting that changes what is trained), and
the rule that a resume keeps those settings unless a change is allowed by name. Part of `medvlm_trl.runs`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

from medvlm_trl.data.manifest import FORMAT as SPLIT_MANIFEST_FORMAT
from medvlm_trl.data.manifest import file_sha256
from medvlm_trl.errors import RunSafetyError
from medvlm_trl.recipe import config_path as recipe_path

logger = logging.getLogger(__name__)

RUN_FILE = "medvlm_run.json"
RUN_FORMAT = "medvlm-trl/run"
RUN_FORMAT_VERSION = 1
# Script-argument fields that decide which rows a run trains on (a dataset's location is not part of its identity).
SPLIT_ID_FIELDS = ("dataset_name", "dataset_train_split", "max_train_samples", "skip_bad_rows")
# Part of the identity only when set (data read through `datasets`), so runs recorded without them keep their id.
SPLIT_ID_OPTIONAL_FIELDS = ("dataset_config", "dataset_columns")
VERSION_PACKAGES = ("medvlm-trl", "trl", "transformers", "torch", "accelerate", "peft", "datasets", "deepspeed")
# Settings that do not change what is trained, so a resume may change them (README, "runs that are safe to stop"):
# where the run is written and how often it is saved, what is logged and where it is reported, evaluation settings
# (these commands train without an eval set), where the data lives (the split file counts by its contents, see
# `split_info`), which test sets the leakage audit reads, and how this machine feeds and connects the processes.
# Every other field of the command's dataclasses must match the checkpoint's record.
FREE_SETTINGS = frozenset(
    {
        # output and saving
        "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "allow_changed_settings", "merge_lora",
        "push_to_hub", "restore_callback_states_from_checkpoint",
        # logging and reporting
        "report_to", "run_name", "project", "disable_tqdm", "num_completions_to_print", "include_num_input_tokens_seen",
        "skip_memory_metrics", "debug",
        # evaluation
        "do_eval", "do_predict", "do_train", "per_device_eval_batch_size", "batch_eval_metrics", "prediction_loss_only",
        "include_for_metrics", "metric_for_best_model", "greater_is_better", "load_best_model_at_end",
        "num_generations_eval", "bf16_full_eval", "fp16_full_eval",
        # where the data lives, and the leakage audit
        "data_dir", "split_file", "test_manifests", "allow_split_overlap",
        # this machine
        "dataloader_num_workers", "dataloader_persistent_workers", "dataloader_pin_memory", "dataloader_prefetch_factor",
        "dataloader_multiprocessing_context", "dataset_num_proc", "ddp_timeout", "ddp_backend", "local_rank",
        "torch_empty_cache_steps", "vllm_gpu_memory_utilization", "vllm_server_host", "vllm_server_port",
        "vllm_server_base_url", "vllm_server_timeout", "vllm_group_port", "vllm_enable_sleep_mode",
    }
)  # fmt: skip
FREE_SETTING_PREFIXES = ("logging_", "log_", "save_", "hub_", "eval_", "trackio_")


# Records made by `prepare_run` in this process, by absolute output dir, for `RunInfoCallback` to pick up.
_PREPARED: dict[str, dict] = {}


def recipe_info(argv: Sequence[str]) -> dict[str, str] | None:
    path = recipe_path(argv)
    if path is None:
        return None
    return {"path": path, "sha256": file_sha256(path)}


def split_info(script_args: Any = None) -> dict[str, Any]:
    """What decides the training rows, and `split_id`: one hash of it that a resume must match.

    The split manifest counts by its contents (SHA-256 of the file), not its path, so moving the data or the
    manifest does not change the id; its own name, split and seed are copied in for people to read.
    """
    info: dict[str, Any] = {}
    if script_args is not None:
        for name in SPLIT_ID_FIELDS:
            if hasattr(script_args, name):
                info[name] = getattr(script_args, name)
        for name in SPLIT_ID_OPTIONAL_FIELDS:
            if getattr(script_args, name, None) is not None:
                info[name] = getattr(script_args, name)
    split_file = getattr(script_args, "split_file", None)
    if split_file:
        info["split_file"] = {"path": str(split_file), "sha256": file_sha256(split_file)}
        try:
            manifest = json.loads(Path(split_file).read_text())
        except (OSError, ValueError):
            manifest = None
        if isinstance(manifest, dict) and manifest.get("format") == SPLIT_MANIFEST_FORMAT:
            for key in ("dataset", "name", "split", "seed"):
                info["split_file"][key] = manifest.get(key)
            info["split_file"]["num_rows"] = len(manifest.get("rows") or [])
    identity = {k: v for k, v in info.items() if k != "split_file"}
    identity["split_file_sha256"] = info["split_file"]["sha256"] if split_file else None
    info["split_id"] = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    if script_args is not None and getattr(script_args, "data_dir", None):
        info["data_dir"] = str(script_args.data_dir)
    return info


def is_free_setting(name: str) -> bool:
    """Whether a resume may change setting `name` (see `FREE_SETTINGS`)."""
    return name in FREE_SETTINGS or name.startswith(FREE_SETTING_PREFIXES)


def _plain_setting(value: Any) -> Any:
    """A setting as a JSON value, so a record read back compares equal to the same setting parsed again."""
    if isinstance(value, Enum):  # TrainingArguments' enums (`lr_scheduler_type`, ...) are `str` subclasses
        return _plain_setting(value.value)
    if is_dataclass(value) and not isinstance(value, type):  # e.g. transformers' AcceleratorConfig
        return _plain_setting(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain_setting(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain_setting(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def training_settings(*configs: Any) -> dict[str, Any]:
    """Every setting of a run's parsed dataclasses that changes what is trained, by name, as JSON values.

    All the fields of the configs (script, training and model arguments) except the free ones (`FREE_SETTINGS`), plus
    the world size (the global batch is per device x processes x accumulation) and the split file's SHA-256 (its
    contents count, not its path). A field several configs share keeps the first config's value.
    """
    settings: dict[str, Any] = {}
    for config in configs:
        if config is None or not is_dataclass(config):
            continue
        for item in fields(config):
            if item.init and not is_free_setting(item.name) and item.name not in settings:
                settings[item.name] = _plain_setting(getattr(config, item.name, None))
        if getattr(config, "split_file", None) and "split_file_sha256" not in settings:
            settings["split_file_sha256"] = file_sha256(config.split_file)
        if hasattr(config, "world_size") and "world_size" not in settings:
            settings["world_size"] = int(config.world_size)
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def rows_sha256(ids: Sequence[Any]) -> str:
    """SHA-256 of the training row ids in dataset order: the rows a run saw, whatever loaded them."""
    return hashlib.sha256("\n".join(str(i) for i in ids).encode()).hexdigest()


def library_versions() -> dict[str, str | None]:
    """Versions of the packages a result depends on (None: not installed), without importing any.

    A package already imported reports its own `__version__`, which for torch names the build (`2.14.1+cu130`).
    """
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in VERSION_PACKAGES:
        module = sys.modules.get(name.replace("-", "_"))
        try:
            versions[name] = getattr(module, "__version__", None) or metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_run_record(folder: str | os.PathLike) -> dict | None:
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        logger.warning("Ignoring unreadable %s: %s", path, err)
        return None
    return record if isinstance(record, dict) else None


def write_run_record(folder: str | os.PathLike, record: dict) -> Path:
    """Write `medvlm_run.json` atomically: a kill mid-write leaves the old record or the new one, never half."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / RUN_FILE
    tmp = folder / f".{RUN_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, target)
    return target


def build_run_record(
    training_args: Any, script_args: Any = None, argv: Sequence[str] | None = None, model_args: Any = None
) -> dict:
    """The record of one invocation (see the module docstring); `global_step` is filled in at each save."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "recipe": recipe_info(argv),
        "command": argv,
        "split": split_info(script_args),
        "versions": library_versions(),
        "trust_remote_code": bool(getattr(training_args, "trust_remote_code", False)),
        "world_size": int(getattr(training_args, "world_size", 1)),
        "seed": getattr(training_args, "seed", None),
        "settings": training_settings(script_args, training_args, model_args),
        "started_at": _now(),
        "resumed_from": None,
        "global_step": 0,
    }


def _summary(record: dict) -> dict:
    """What an earlier invocation of the same run keeps in the `history` of the next one."""
    keys = ("started_at", "command", "recipe", "resumed_from", "global_step")
    return {key: record.get(key) for key in keys}


_ABSENT = object()  # a setting one of two records lacks (e.g. a field a newer TRL added)


def _shown(value: Any) -> str:
    text = "(not set)" if value is _ABSENT else json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Setting name -> (old value, new value) for every setting that differs (a missing one is `_ABSENT`)."""
    return {
        key: (old.get(key, _ABSENT), new.get(key, _ABSENT))
        for key in sorted(set(old) | set(new))
        if old.get(key, _ABSENT) != new.get(key, _ABSENT)
    }


def check_resume_compatible(checkpoint: str | os.PathLike, record: dict, allowed: Sequence[str] | None = None) -> None:
    """Refuse to resume a checkpoint with settings that change what is trained, unless each changed one is `allowed`
    by name; the allowed changes are appended to `record["setting_changes"]`. Warns when the recipe text changed.

    A checkpoint recorded before settings were (no `settings`) is checked on its split only.
    """
    saved = read_run_record(checkpoint)
    allowed = list(allowed or [])
    record["setting_changes"] = list((saved or {}).get("setting_changes") or [])
    if saved is None:
        logger.warning("%s has no %s: cannot check that it was trained with the same settings.", checkpoint, RUN_FILE)
        return
    settings = record.get("settings") or {}
    unknown = sorted(key for key in allowed if key not in settings)
    if unknown:
        raise RunSafetyError(
            f"allow_changed_settings names {', '.join(unknown)}, which "
            f"{'is not a setting' if len(unknown) == 1 else 'are not settings'} a resume must keep (free settings "
            f"such as logging or saving may change without it)"
        )
    old_split, new_split = saved.get("split") or {}, record["split"]
    if "settings" not in saved:
        if old_split.get("split_id") and old_split.get("split_id") != new_split.get("split_id"):
            differences = sorted(k for k in set(old_split) | set(new_split) if old_split.get(k) != new_split.get(k))
            raise RunSafetyError(
                f"{checkpoint} was trained on another split (split_id {old_split.get('split_id')} vs "
                f"{new_split.get('split_id')}; differing: {', '.join(differences)}); resume with the same data "
                f"settings, or start a new run in another output_dir"
            )
        logger.warning("%s records no settings (an older run record): only its split was checked.", checkpoint)
    else:
        changes = changed_settings(saved["settings"] or {}, settings)
        refused = {key: pair for key, pair in changes.items() if key not in allowed}
        if refused:
            listed = "; ".join(f"{key} {_shown(old)} -> {_shown(new)}" for key, (old, new) in refused.items())
            raise RunSafetyError(
                f"cannot resume {checkpoint} with other settings than it was trained with ({listed}); resume with the "
                f"checkpoint's settings, start a new run in another output_dir, or allow the change on purpose with "
                f"--allow_changed_settings {' '.join(refused)} (recorded in {RUN_FILE} and the model card)"
            )
        step = saved.get("global_step")
        for key, (old, new) in changes.items():
            logger.warning(
                "Resuming %s with %s changed on purpose: %s -> %s.", checkpoint, key, _shown(old), _shown(new)
            )
            record["setting_changes"].append(
                {
                    "key": key,
                    "from": None if old is _ABSENT else old,
                    "to": None if new is _ABSENT else new,
                    "at_step": step,
                    "checkpoint": str(checkpoint),
                }
            )
    old_recipe, new_recipe = saved.get("recipe") or {}, record.get("recipe") or {}
    if old_recipe.get("sha256") and new_recipe.get("sha256") and old_recipe["sha256"] != new_recipe["sha256"]:
        logger.warning(
            "Resuming %s with a recipe whose text changed since it was saved (%s, sha256 %s -> %s).",
            checkpoint,
            new_recipe.get("path"),
            old_recipe["sha256"][:12],
            new_recipe["sha256"][:12],
        )


def setting_changes(output_dir: str | os.PathLike) -> list[dict]:
    """The settings a run changed on purpose when it was resumed (`allow_changed_settings`), oldest first."""
    return list((read_run_record(output_dir) or {}).get("setting_changes") or [])
