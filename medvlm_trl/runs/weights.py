"""Resumed weights: transformers 5 saves Qwen2-VL under its original key names (`model.layers.*`) but resumes with a
plain `load_state_dict` that expects the in-memory names (`model.language_model.layers.*`), so every weight but
`lm_head` silently stays at its initial value (huggingface/transformers#43701). `restore_checkpoint_weights` loads
them under the right names. Part of `medvlm_trl.runs`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medvlm_trl.errors import RunSafetyError

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


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
