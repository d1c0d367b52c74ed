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

__all__ = ["ModelLoadError", "load_pretrained"]


class ModelLoadError(ValueError):
    """A model, processor or tokenizer that cannot be loaded; the message names what it is and the id or path."""


def _reason(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


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
