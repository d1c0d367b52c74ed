"""One clear error for a model, processor or tokenizer that cannot be loaded.

Every model the project loads by name (the policy, its processor, the semantic judge, the metric models, a tokenizer
that counts tokens) goes through [`load_pretrained`], so that a wrong path or a hub id that cannot be reached offline
ends as one line naming what was being loaded and from where (`medvlm-trl grpo` / `sft` / `dpo` / `eval` exit with
status 2), instead of a transformers traceback. Imports nothing heavy: the reward functions use it too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from medvlm_trl.errors import ModelLoadError

__all__ = ["ModelLoadError", "load_pretrained"]


def _reason(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def resolve_dtype(torch, dtype: Any):
    """The one dtype-name rule of every model load (training, the judge, evaluation): a torch dtype from its name (`bfloat16`, `torch.float16`); `None`, `auto` and dtypes pass through."""
    if dtype is None or dtype == "auto" or not isinstance(dtype, str):
        return dtype
    value = getattr(torch, dtype.removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return value


def load_pretrained(load: Callable[..., Any], name: Any, what: str, **kwargs: Any) -> Any:
    """`load(name, **kwargs)` (a `from_pretrained`, or a class such as sentence-transformers' `CrossEncoder`), with an
    `OSError` / `ValueError` from it turned into a [`ModelLoadError`] that names `what` and `name`.

    Example:
    ```python
    >>> from transformers import AutoTokenizer
    >>> load_pretrained(AutoTokenizer.from_pretrained, "no/such-model-here", "the ECR tokenizer")
    Traceback (most recent call last):
    ModelLoadError: cannot load the ECR tokenizer from 'no/such-model-here' (...)
    ```
    """
    try:
        return load(os.fspath(name) if isinstance(name, os.PathLike) else name, **kwargs)
    except ModelLoadError:
        raise
    except (OSError, ValueError) as err:
        text = os.fspath(name) if isinstance(name, (str, os.PathLike)) else repr(name)
        if not isinstance(name, (str, os.PathLike)) or os.path.exists(text):
            where = "a local path"
        elif isinstance(err, OSError):  # how transformers reports files it could neither find nor fetch
            where = "not a local folder; as a hub id it needs network access or a copy in the Hugging Face cache"
        else:  # the files were found (the hub or its cache), but the loader refused them: the reason says why
            where = "a hub id"
        raise ModelLoadError(f"cannot load the {what} from {text!r} ({where}): {_reason(err)}") from err


def torch_device(torch, device: Any):
    """`device` as a torch device; default CUDA when there is one."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_causal_lm(model: Any, tokenizer: Any, device: Any, dtype: Any, what: str):
    """A causal LM and its tokenizer from a model id / path (each load a `ModelLoadError` naming `what`), or the loaded
    pair as given; in eval mode on `device`."""
    import torch

    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if tokenizer is None:
            tokenizer = load_pretrained(AutoTokenizer.from_pretrained, model, f"{what}'s tokenizer")
        kwargs = {"dtype": resolve_dtype(torch, dtype)} if dtype is not None else {}
        model = load_pretrained(AutoModelForCausalLM.from_pretrained, model, what, **kwargs)
        model.to(torch_device(torch, device))
    elif tokenizer is None:
        raise ValueError("an already-loaded model needs its tokenizer: pass tokenizer=...")
    model.eval()
    return model, tokenizer


def model_device(model):
    """The device of a model's first parameter."""
    return next(model.parameters()).device
