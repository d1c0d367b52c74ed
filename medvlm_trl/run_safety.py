"""Run safety: a training run never writes over another run, resumes only from a whole checkpoint, and says what it was.

Both papers train for hours on several GPUs (MedVLM-R1, Pan et al., section 4.1: 300 GRPO steps; the RL-MedVQA study,
Zhu et al., arXiv:2505.13973, Table S2: 1500 steps on 4 A100s with DeepSpeed ZeRO-2), so a run is an asset. Three rules
protect it, applied by every training entry point (`medvlm-trl grpo | sft | dpo`) before the model is loaded:

1. **One run per output dir.** A non-empty `output_dir` is refused unless the command resumes
   (`resume_from_checkpoint`) or overwrites (`overwrite_output_dir`, which transformers 5 no longer has, so it is
   ours: `RunSafetyArguments`). Overwriting empties the folder first, so no stale `checkpoint-*` of the old run is
   later mistaken for one of the new run; a non-empty folder that holds no run at all is never emptied.
2. **Resume from a whole checkpoint, on the same data, with its weights.** `resume_from_checkpoint: true` (or `last`)
   picks the newest complete `checkpoint-*`; a checkpoint cut short by a kill (no `trainer_state.json`, or no
   optimizer / scheduler state) is skipped with a warning, never loaded half. Every setting that changes what is
   trained (`training_settings`: the model, the data and its split, pixel bounds, prompt, rewards, loss, learning
   rate and schedule, batch, G, lengths, seed, world size, ...) must equal the checkpoint's record, or the resume is
   refused naming each key with its old and new value; only output, saving, logging and reporting settings
   (`FREE_SETTINGS`) may change. A deliberate change is named key by key with `allow_changed_settings` and recorded
   (`setting_changes` in the run record, and the model card). An explicit `--resume_from_checkpoint` on the command
   line wins over a recipe's `overwrite_output_dir: true`; a checkpoint already at `max_steps` is not resumed (there
   is nothing left to train, and transformers would train a step past the end). And the weights training continues
   from are checked to be the checkpoint's: transformers 5 saves Qwen2-VL under its original key names
   (`model.layers.*`) but resumes with a plain `load_state_dict` that expects the in-memory names
   (`model.language_model.layers.*`), so every weight but `lm_head` silently stays at its initial value
   (huggingface/transformers#43701); `restore_checkpoint_weights` loads them under the right names.
3. **Every checkpoint says what made it.** `RunInfoCallback` writes `medvlm_run.json` into each `checkpoint-*` and the
   output dir: the recipe path and SHA-256 of its text, the command line, the split's id (a hash of the dataset name,
   split, split-manifest contents and row limits), a hash of the training row ids, the library / TRL / transformers /
   torch versions, the world size, the seed, whether `trust_remote_code` was on, and the value of every setting
   that changes what is trained (`settings`).

Before any of this, a run that would train nothing (`max_steps: 0`, zero epochs, an empty batch) is refused: it would
save the untrained model as a trained one.

Wiring, in an entry point's `main()` right after parsing, and where its trainer is built:

    prepare_run(training_args, script_args, argv=argv, model_args=model_args)  # refuses, resolves the resume, records
    trainer.add_callback(RunInfoCallback(script_args))  # record into every checkpoint-*; resumed weights checked
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

RUN_FILE = "medvlm_run.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
RUN_FORMAT = "medvlm-trl/run"
RUN_FORMAT_VERSION = 1
SPLIT_MANIFEST_FORMAT = "medvlm-trl/split-manifest"
# transformers' checkpoint file names (trainer.py), repeated so that checking a folder needs no torch import.
TRAINER_STATE_NAME = "trainer_state.json"
SCHEDULER_NAME = "scheduler.pt"
OPTIMIZER_NAMES = ("optimizer.pt", "optimizer.bin")
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# What a folder holds once any training run (ours, TRL's or transformers') has written into it.
RUN_MARKERS = (RUN_FILE, TRAINER_STATE_NAME, "training_args.bin", "config.json", "adapter_config.json")
# Values of `resume_from_checkpoint` that mean "the newest complete checkpoint in output_dir" (the field is a string).
RESUME_LAST = {"true", "last", "latest", "yes", "1"}
RESUME_NONE = {"", "false", "no", "none", "0"}
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


class RunSafetyError(ValueError):
    """An output dir or checkpoint that this command must not write to or resume from, with what to do instead."""


@dataclass
class RunSafetyArguments:
    """The one run-safety switch a recipe or command line sets (transformers 5 dropped its `overwrite_output_dir`).

    Mix it into a training config: `class MedVLMGRPOConfig(RunSafetyArguments, GRPOConfig)`.
    """

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Empty a non-empty `output_dir` that holds an earlier run and train from scratch. Without it (and "
            "without `resume_from_checkpoint`) such a folder is refused, so that no run is overwritten by accident. "
            "A non-empty folder that holds no run (no checkpoint-*, trainer_state.json or medvlm_run.json) is never "
            "emptied. A `--resume_from_checkpoint` given on the command line wins over this key set in a recipe."
        },
    )
    allow_changed_settings: list[str] | None = field(
        default=None,
        metadata={
            "help": "On a resume, the settings allowed to differ from the checkpoint's record, each by name (e.g. "
            "`--allow_changed_settings max_steps learning_rate`). Without it a resume whose settings differ in "
            "anything that changes what is trained is refused. Each allowed change is recorded in medvlm_run.json "
            "(`setting_changes`) and in the model card."
        },
    )


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints


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


# ---------------------------------------------------------------------------------------------------------------------
# The output dir


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


# ---------------------------------------------------------------------------------------------------------------------
# The run record


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recipe_path(argv: Sequence[str]) -> str | None:
    """The `--config` file of a TrlParser command line, as given."""
    argv = list(argv)
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


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


def setting_changes(output_dir: str | os.PathLike) -> list[dict]:
    """The settings a run changed on purpose when it was resumed (`allow_changed_settings`), oldest first."""
    return list((read_run_record(output_dir) or {}).get("setting_changes") or [])


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


# ---------------------------------------------------------------------------------------------------------------------
# Resumed weights


def checkpoint_weight_files(checkpoint: str | os.PathLike) -> list[Path]:
    """The full-model safetensors files of a checkpoint that `Trainer` loads with `load_state_dict`.

    Empty when the weights are someone else's to load: a LoRA adapter (PEFT loads it by its own names), DeepSpeed's
    `global_step*/` engine state or FSDP's shards (their own formats, saved and loaded under the same names).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        return []
    if any(p.is_dir() and (p.name.startswith("global_step") or "fsdp" in p.name) for p in checkpoint.iterdir()):
        return []
    if (checkpoint / SAFE_WEIGHTS_NAME).is_file():
        return [checkpoint / SAFE_WEIGHTS_NAME]
    index = checkpoint / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        return [checkpoint / name for name in sorted(set(weight_map.values()))]
    return []


def _saved_to_model_keys(model: Any, state_dict: dict) -> dict[str, list[str]]:
    """Checkpoint key -> the model's own key(s) for it, by running the model's save-time renaming on its own tensors.

    `save_pretrained` reverts the key conversions `from_pretrained` applied (for Qwen2-VL,
    `model.language_model.X` -> `model.X`, `model.visual.X` -> `visual.X`); renaming keeps each tensor object, so a
    renamed key is traced back to the model's key by identity. Tied weights share a tensor, so one saved key may
    name several of the model's keys.
    """
    by_tensor: dict[int, list[str]] = {}
    for key, tensor in state_dict.items():
        by_tensor.setdefault(id(tensor), []).append(key)
    try:
        from transformers.core_model_loading import revert_weight_conversion

        saved = revert_weight_conversion(model, dict(state_dict))
    except (ImportError, AttributeError, TypeError):  # not a transformers model, or an older transformers
        saved = state_dict
    return {key: by_tensor.get(id(tensor), []) for key, tensor in saved.items()}


def restore_checkpoint_weights(model: Any, checkpoint: str | os.PathLike) -> list[str]:
    """Make `model`'s weights those saved in `checkpoint`; returns the model keys that had to be copied in.

    Called after transformers has loaded the checkpoint, so on a correct load it only compares (one tensor at a time,
    so memory stays at one tensor beyond the model). A checkpoint tensor that matches no weight of the model is an
    error: training on would silently mix checkpoint and initial weights.
    """
    import torch
    from safetensors import safe_open

    files = checkpoint_weight_files(checkpoint)
    if not files:
        return []
    state_dict = model.state_dict()
    to_model = _saved_to_model_keys(model, state_dict)
    restored, unmatched = [], []
    with torch.no_grad():
        for path in files:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                for key in fh.keys():
                    targets = to_model.get(key) or ([key] if key in state_dict else [])
                    if not targets:
                        unmatched.append(key)
                        continue
                    saved = fh.get_tensor(key)
                    for target in targets:
                        current = state_dict[target]
                        if current.shape != saved.shape:
                            raise RunSafetyError(
                                f"{path}: {key} has shape {tuple(saved.shape)}, but the model's {target} has "
                                f"{tuple(current.shape)}; this checkpoint is not of this model"
                            )
                        value = saved.to(device=current.device, dtype=current.dtype)
                        if not torch.equal(current, value):
                            current.copy_(value)
                            restored.append(target)
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (f", ... ({len(unmatched)} in all)" if len(unmatched) > 5 else "")
        raise RunSafetyError(f"{checkpoint} holds weights this model has no place for: {shown}")
    return restored


# ---------------------------------------------------------------------------------------------------------------------
# The callback


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
