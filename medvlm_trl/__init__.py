"""medvlm-trl: GRPO for medical vision-language models on Hugging Face TRL (MedVLM-R1 and the RL-MedVQA study).

The trainer and its config are exported lazily, so that `import medvlm_trl.rewards` (and `medvlm_trl.data`) stays
free of torch and TRL:

    from medvlm_trl import MedVLMGRPOConfig, MedVLMGRPOTrainer
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> module that defines it; imported on first access (PEP 562).
_LAZY_EXPORTS = {
    "MedVLMGRPOConfig": "medvlm_trl.configs",
    "MedVLMScriptArguments": "medvlm_trl.configs",
    "MedVLMGRPOTrainer": "medvlm_trl.trainer",
}

__all__ = list(_LAZY_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
