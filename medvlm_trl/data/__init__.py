"""Datasets in the contract's example row: loaders, splits, prompts, images and the embedded sample set."""

from medvlm_trl.data.prompts import LETTERS, build_prompt, format_options, prompt_text
from medvlm_trl.data.schema import BadRowError, SkipReport, check_row, filter_rows

__all__ = [
    "LETTERS",
    "BadRowError",
    "SkipReport",
    "build_prompt",
    "check_row",
    "filter_rows",
    "format_options",
    "prompt_text",
]
