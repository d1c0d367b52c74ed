"""The one-line errors: what a command reports as `medvlm-trl CMD: error: MESSAGE` (exit status 2), never a traceback.

Every error the library raises for input a person can fix (a recipe, a row, an image, a model id, an output folder,
a test split) is a `MedVLMError`; `medvlm_trl.cli.error_boundary` is the one place that turns it into that line. Each
subclass also keeps the built-in base it always had (`ValueError`, `RuntimeError`), so code that caught those still
does. The classes stay importable from the modules that raise them (`medvlm_trl.data.schema.BadRowError`, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class MedVLMError(Exception):
    """Input a person can fix; the message names the file, key, flag or row, and says what to do."""


class RecipeError(MedVLMError, ValueError):
    """A recipe or command line that cannot describe a run (unknown key, wrong value type, missing value)."""


class ModelLoadError(MedVLMError, ValueError):
    """A model, processor or tokenizer that cannot be loaded; the message names what it is and the id or path."""


class BadRowError(MedVLMError, ValueError):
    """A row that breaks the contract; `row_id` and `reason` say which and why."""

    def __init__(self, row_id: str | None, reason: str, detail: str = ""):
        self.row_id, self.reason, self.detail = row_id, reason, detail
        super().__init__(f"row {row_id!r}: {reason}" + (f" ({detail})" if detail else ""))


class ImageLoadError(MedVLMError, ValueError):
    """An image that cannot be read; the message names the row it belongs to."""


class LeakageError(MedVLMError, RuntimeError):
    """Test items found in the training data; `report` holds the audit (`medvlm_trl.data.audit.AuditReport`)."""

    def __init__(self, report: Any):
        self.report = report
        super().__init__("training data overlaps the test split(s):\n" + report.summary())


class RunSafetyError(MedVLMError, ValueError):
    """An output dir or checkpoint that this command must not write to or resume from, with what to do instead."""


class EvalInputError(MedVLMError, ValueError):
    """Input the evaluator cannot use (a missing split, a damaged predictions file, a mismatched resume)."""


class ReproduceError(MedVLMError, ValueError):
    """A recipe folder, recipe or protocol that cannot describe a table row."""


class RolloutPromptMismatchError(MedVLMError, RuntimeError):
    """vLLM generated a rollout from other token ids than the ones the policy scores; the message names the row."""


@contextmanager
def wrapped_errors(
    error: type[MedVLMError],
    prefix: str = "",
    *,
    bare: tuple[type[Exception], ...] = (),
    wrap: tuple[type[Exception], ...] = (ValueError, OSError),
) -> Iterator:
    """Re-raise the library's own errors (a bad row, an unreadable image, ...: they already name what is wrong), and
    wrap the rest of what reading input raises (`wrap`: a `ValueError` or `OSError`, such as an unknown dataset or a
    missing file) in `error` with `prefix` before its message (`bare` exceptions: without it). The one place that rule
    is written.

    >>> try:
    ...     with wrapped_errors(RecipeError, "dataset 'x': "):
    ...         raise ValueError("unknown dataset")
    ... except RecipeError as err:
    ...     print(err)
    dataset 'x': unknown dataset
    """
    try:
        yield
    except MedVLMError:
        raise
    except bare as err:
        raise error(str(err)) from err
    except wrap as err:
        raise error(f"{prefix}{err}") from err


__all__ = [
    "BadRowError",
    "EvalInputError",
    "ImageLoadError",
    "LeakageError",
    "MedVLMError",
    "ModelLoadError",
    "RecipeError",
    "ReproduceError",
    "RolloutPromptMismatchError",
    "RunSafetyError",
    "wrapped_errors",
]
