"""The model card every trained run leaves in its output folder: what it started from, what it saw, how, and how well.

A reproduction is only checkable when each checkpoint says which base model, which data split (by a fingerprint of
its row ids, so two runs on "the 600 MRI items" can be told apart when their items differ), which recipe and which
hyper-parameters made it. The card is a Hugging Face `README.md` whose YAML front matter holds all of that under a
`medvlm_trl` key, so `read_model_card` can read it back and `add_results` can add test accuracies once they exist
without losing anything.

    >>> card = write_model_card("runs/grpo", base_model="Qwen/Qwen2-VL-2B-Instruct", method="grpo",
    ...                         dataset_name="huatuo", split="train_mri", split_id=split_fingerprint(rows))
    >>> add_results("runs/grpo", {"MRI": 95.33, "CT": 70.33, "X-ray": 69.0})  # accuracy (%), as eval writes it
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

CARD_NAME = "README.md"
CARD_KEY = "medvlm_trl"
PAPERS = {
    "medvlm_r1": (
        "MedVLM-R1: Incentivizing Medical Reasoning Capability of Vision-Language Models (VLMs) via Reinforcement "
        "Learning (Pan et al., 2025, arXiv:2502.19634)"
    ),
    "rl_medvqa": (
        "Toward Effective Reinforcement Learning Fine-Tuning for Medical VQA in Vision-Language Models "
        "(Zhu et al., 2025, arXiv:2505.13973)"
    ),
}
METHODS = {
    "grpo": "GRPO (TRL `GRPOTrainer`)",
    "dr_grpo": "Dr.GRPO (TRL `GRPOTrainer`, `loss_type: dr_grpo`)",
    "sft": "supervised fine-tuning (TRL `SFTTrainer`)",
    "dpo": "direct preference optimisation (TRL `DPOTrainer`)",
}
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def split_fingerprint(rows: Iterable[Mapping[str, Any]]) -> str:
    """A short id of a data split: the SHA-256 of its sorted row ids (order-free; any added or swapped item shows).

    >>> split_fingerprint([{"id": "b"}, {"id": "a"}]) == split_fingerprint([{"id": "a"}, {"id": "b"}])
    True
    """
    ids = sorted(str(row["id"]) for row in rows)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    return f"{len(ids)}-{digest}"


def run_hyperparameters(training_args: Any, model_args: Any, keys: Iterable[str]) -> dict[str, Any]:
    """The card's hyper-parameter table: `keys` read from the training config (those it has), plus LoRA's settings
    from `trl.ModelConfig` when the run trains an adapter."""
    params = {key: getattr(training_args, key) for key in keys if hasattr(training_args, key)}
    if model_args.use_peft:
        params.update(lora_r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout)
        params["lora_target_modules"] = model_args.lora_target_modules
    return params


def _plain(value: Any) -> Any:
    """Hyper-parameters as YAML-safe plain values (enums and paths as strings)."""
    if isinstance(value, Enum):  # TrainingArguments' enums are `str` subclasses that YAML cannot represent
        return _plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(getattr(value, "value", value))


def _render(meta: dict) -> str:
    info = meta[CARD_KEY]
    lines = [f"# {info.get('name') or Path(info.get('output_dir', 'model')).name}", ""]
    method = METHODS.get(info["method"], info["method"])
    lines.append(f"Fine-tuned from `{info['base_model']}` with {method}, by `medvlm-trl`.")
    if info.get("paper"):
        lines += ["", f"Reproduces a row of Table 1 of: {PAPERS.get(info['paper'], info['paper'])}."]
    lines += ["", "## Training data", ""]
    lines.append(f"- dataset: `{info['dataset_name']}`, split `{info['split']}`")
    if info.get("split_file"):
        lines.append(f"- split manifest: `{info['split_file']}`")
    lines.append(f"- split id: `{info['split_id']}` (row count, then SHA-256 of the sorted row ids)")
    if info.get("prompt_template"):
        lines.append(f"- prompt template: `{info['prompt_template']}`")
    lines += ["", "## Recipe", ""]
    lines.append(f"- recipe: `{info['recipe']}`" if info.get("recipe") else "- recipe: (arguments given directly)")
    params = info.get("hyperparameters") or {}
    if params:
        lines += ["", "| hyper-parameter | value |", "|---|---|"]
        lines += [f"| `{k}` | `{v}` |" for k, v in params.items()]
    changes = info.get("setting_changes") or []
    if changes:
        lines += [
            "",
            "Settings changed on purpose when the run was resumed (`allow_changed_settings`): the model was "
            "trained partly under the first value, partly under the second.",
            "",
        ]
        lines += ["| setting | from | to | from step |", "|---|---|---|---|"]
        lines += [f"| `{c.get('key')}` | `{c.get('from')}` | `{c.get('to')}` | {c.get('at_step')} |" for c in changes]
    lines += ["", "## Results", ""]
    results = info.get("results") or {}
    if results:
        lines += ["| test set | accuracy (%) |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in results.items()]
        if info.get("results_note"):
            lines += ["", info["results_note"]]
    else:
        lines.append("Not evaluated yet: run `medvlm-trl eval` on this folder.")
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + "\n".join(lines) + "\n"


def write_model_card(
    output_dir: str | os.PathLike,
    *,
    base_model: str,
    method: str,
    dataset_name: str,
    split: str,
    split_id: str,
    recipe: str | os.PathLike | None = None,
    paper: str | None = None,
    split_file: str | os.PathLike | None = None,
    prompt_template: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    results: Mapping[str, Any] | None = None,
    name: str | None = None,
    setting_changes: Iterable[Mapping[str, Any]] | None = None,
) -> Path:
    """Write `README.md` into `output_dir` (replacing TRL's generic card) and return its path.

    Args:
        base_model: the hub id or path training started from.
        method: `grpo`, `sft` or `dpo` (others are printed as given).
        dataset_name, split, split_id: the training data; `split_id` from [`split_fingerprint`].
        recipe: the YAML recipe the run was launched with.
        paper: `medvlm_r1` or `rl_medvqa` when the run is a Table 1 row.
        hyperparameters: the settings worth reading at a glance (learning rate, steps, beta, ...).
        results: test accuracies by test set, when known.
        setting_changes: the settings a resume changed on purpose (`run_safety.setting_changes`), each with `key`,
            `from`, `to` and `at_step`.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    is_local = os.path.isdir(base_model)
    meta: dict[str, Any] = {
        # The hub's `base_model` field only makes sense for a hub id; a local path stays in our own block.
        **({} if is_local else {"base_model": base_model}),
        "library_name": "transformers",
        "pipeline_tag": "image-text-to-text",
        "tags": ["medvlm-trl", "trl", method, "medical", "vqa"],
    }
    meta[CARD_KEY] = {
        "name": name or out.name,
        "method": method,
        "base_model": base_model,
        "paper": paper,
        "dataset_name": dataset_name,
        "split": split,
        "split_id": split_id,
        "split_file": str(split_file) if split_file else None,
        "recipe": str(recipe) if recipe else None,
        "prompt_template": prompt_template,
        "hyperparameters": _plain(dict(hyperparameters or {})),
        "results": _plain(dict(results or {})),
    }
    if setting_changes:
        meta[CARD_KEY]["setting_changes"] = _plain([dict(change) for change in setting_changes])
    path = out / CARD_NAME
    path.write_text(_render(meta))
    return path


def read_model_card(output_dir: str | os.PathLike) -> dict:
    """The `medvlm_trl` block of a card written by [`write_model_card`]; `ValueError` if the card is not ours."""
    path = Path(output_dir) / CARD_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no model card at {path}")
    match = _FRONT_MATTER.match(path.read_text())
    meta = yaml.safe_load(match.group(1)) if match else None
    if not isinstance(meta, dict) or CARD_KEY not in meta:
        raise ValueError(f"{path} is not a medvlm-trl model card (no `{CARD_KEY}` block in its front matter)")
    return meta[CARD_KEY]


def add_results(
    output_dir: str | os.PathLike, results: Mapping[str, Any], note: str | None = None, paper: str | None = None
) -> Path:
    """Merge test accuracies (%) into an existing card and re-render it; `paper` names the table the run belongs to."""
    path = Path(output_dir) / CARD_NAME
    meta = yaml.safe_load(_FRONT_MATTER.match(path.read_text()).group(1)) if path.is_file() else None
    if not isinstance(meta, dict) or CARD_KEY not in meta:
        raise ValueError(f"{path} is not a medvlm-trl model card; write one with write_model_card first")
    info = meta[CARD_KEY]
    info["results"] = {**(info.get("results") or {}), **_plain(dict(results))}
    if note:
        info["results_note"] = note
    if paper:
        info["paper"] = paper
    path.write_text(_render(meta))
    return path
