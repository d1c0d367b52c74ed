"""MedVLM-R1's two rule-based rewards (Pan et al., section 3): the format reward and the accuracy reward.

Both are plain TRL reward functions, `fn(completions, **kwargs) -> list[float]`, and accept completions as strings or
in TRL's conversational form.

How `accuracy_reward` reads the content of the single `<answer>` block (stripped), in this order:

1. exactly the correct letter (upper case, as the prompt's `A) ...` option lines write it) -> 1.0; exactly another
   option's letter -> 0.0;
2. the text of one option instead of its letter (compared case-insensitively, with runs of whitespace collapsed and
   trailing periods dropped) -> 0.5 when it is the correct option's text, else 0.0;
3. a leading option letter, optionally after `(` or `[`, followed by a boundary (the end, whitespace, or one of
   `) ] . : , ;`) -> the correct letter with extra text (`"B, because ..."`, `"B: Labral pathology"`, `"B) text"`,
   `"(B)"`, `"B."`) -> 0.5; a wrong leading letter -> 0.0;
4. anything else (`"The answer is B"`, `"B/C"`, `"B?"`, `"**B**"`, a lower-case `"b"`, empty) -> 0.0.

Guards on rule 3, so that hedging and English words are not paid:

- several letters: the extra text names another option letter as a standalone capital (`"A or B"`, `"A, B"`,
  `"B (or C)"`, `"B, not A"`) -> 0.0; the correct option's own text is removed before this check, so
  `"B: Type C fracture"` still scores 0.5 when option B reads "Type C fracture";
- the extra text is exactly another option's text (`"B) <text of option C>"`) -> 0.0;
- `A` and `I` are English words: a leading `A` or `I` followed by a space or tab and then a word (`"A lesion is
  seen"`, `"I think B"`) is read as the word, not as a letter, and the same reading applies when the guard above
  looks for other letters (`"B. A lesion is seen"` keeps its 0.5).

`answer` must be one of the row's option letters (`"ABCDEF"[i]` for option i); otherwise the completion scores 0.0
(the data layer rejects such rows before they get here).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from .parsing import parse_completion

__all__ = ["accuracy_reward", "format_reward", "score_answer"]

# A leading option letter: group 1 is the letter; what follows must be a boundary (checked in code for A and I).
_LEADING_LETTER = re.compile(r"[(\[]?([A-Z])(?=$|[\s)\].:,;])")
# A standalone capital letter anywhere: not glued to a letter, digit or underscore on either side.
_STANDALONE_LETTER = re.compile(r"(?<!\w)[A-Z](?!\w)")
# One-letter English words that look like option letters.
_WORD_LETTERS = frozenset("AI")
_MAX_OPTIONS = len(string.ascii_uppercase)


def format_reward(completions: list, **kwargs) -> list[float]:
    r"""MedVLM-R1's format reward: 1.0 when `<think>`, `</think>`, `<answer>` and `</answer>` each occur exactly once,
    the think block comes before the answer block, and nothing but whitespace stands outside the two blocks
    (whitespace between `</think>` and `<answer>` is allowed); else 0.0.

    Example:
    ```python
    >>> format_reward(["<think>A labral tear.</think>\n<answer>B</answer>", "<answer>B</answer>"])
    [1.0, 0.0]
    ```
    """
    return [1.0 if parse_completion(c).format_ok else 0.0 for c in completions]


def _norm(text: str) -> str:
    """Case-folded, whitespace collapsed, trailing periods and spaces dropped: how option texts are compared."""
    return " ".join(text.casefold().split()).rstrip(". ")


def _options_list(options: Any) -> list[str] | None:
    if options is None or isinstance(options, (str, bytes, Mapping)):
        return None
    try:
        items = list(options)
    except TypeError:
        return None
    if not 2 <= len(items) <= _MAX_OPTIONS:
        return None
    return [item if isinstance(item, str) else "" for item in items]


def _is_word_letter(text: str, end: int) -> bool:
    """Whether the capital ending at `end` is the English word `A` or `I` ("A lesion", "I think")."""
    if text[end - 1] not in _WORD_LETTERS or end >= len(text) or text[end] not in " \t":
        return False
    rest = text[end:].lstrip(" \t")
    return bool(rest) and rest[0].isalnum()


def _names_other_letter(extra: str, correct: str, letters: str) -> bool:
    for match in _STANDALONE_LETTER.finditer(extra):
        letter = match.group()
        if letter != correct and letter in letters and not _is_word_letter(extra, match.end()):
            return True
    return False


def score_answer(answer_text: str | None, answer: Any, options: Any) -> float:
    """Accuracy of one answer block's content (already stripped, `None` when there is no single block) against the
    correct letter `answer` and the row's `options`; the rules are in the module docstring. Never raises.

    Example:
    ```python
    >>> [score_answer(t, "B", ["Normal", "Labral pathology"]) for t in ["B", "B: Labral pathology", "A", None]]
    [1.0, 0.5, 0.0, 0.0]
    ```
    """
    if not answer_text or not isinstance(answer, str):
        return 0.0
    opts = _options_list(options)
    if opts is None:
        return 0.0
    letters = string.ascii_uppercase[: len(opts)]
    correct = answer.strip().upper()
    if len(correct) != 1 or correct not in letters:
        return 0.0
    if answer_text == correct:
        return 1.0
    if answer_text in letters:
        return 0.0  # a bare wrong letter, even if some option's text happens to read like a letter

    # The option's text instead of its letter.
    norm_opts = [_norm(o) for o in opts]
    correct_norm = norm_opts[letters.index(correct)]
    norm_text = _norm(answer_text)
    if norm_text and norm_text in norm_opts:
        return 0.5 if norm_text == correct_norm else 0.0

    # A leading letter with extra text.
    match = _LEADING_LETTER.match(answer_text)
    if match is None or _is_word_letter(answer_text, match.end()):
        return 0.0
    if match.group(1) != correct:
        return 0.0
    extra = answer_text[match.end() :]
    norm_extra = _norm(extra.lstrip(" \t\n\r).:,;]-"))
    if norm_extra and norm_extra != correct_norm and norm_extra in norm_opts:
        return 0.0  # "B) <another option's text>"
    if _names_other_letter(extra, correct, letters):
        own_text = opts[letters.index(correct)].strip()
        if not own_text:
            return 0.0
        extra = re.sub(re.escape(own_text), " ", extra, flags=re.IGNORECASE)
        if _names_other_letter(extra, correct, letters):
            return 0.0
    return 0.5


def _answer_columns(reward: str, n: int, answer: Any, options: Any, kwargs: Mapping) -> tuple[Sequence, Sequence]:
    """The `answer` and `options` columns of a reward call, each checked to hold one entry per completion (`n`); the
    errors name `reward`, the column and, for a missing column, the columns that did arrive."""
    given = [name for name, value in (("answer", answer), ("options", options)) if value is not None] + list(kwargs)
    return _per_completion(answer, n, "answer", reward, given), _per_completion(options, n, "options", reward, given)


def _per_completion(values: Any, n: int, name: str, reward: str, given: Sequence[str]) -> Sequence:
    """`values` checked to hold one entry per completion. `None` means TRL passed no such dataset column (a dataset
    without `answer` / `options`): a clear error naming the column and the keyword arguments that did arrive."""
    if values is None:
        names = ", ".join(sorted(given)) or "none"
        raise ValueError(
            f"{reward} needs the dataset's `{name}` column (one value per completion), but it was not passed; "
            f"the other keyword arguments were: {names}"
        )
    if isinstance(values, (list, tuple)) and len(values) == n:
        return values
    raise ValueError(
        f"{reward} needs one `{name}` value per completion ({n}); got {type(values).__name__}"
        + (f" of length {len(values)}" if isinstance(values, (list, tuple)) else "")
    )


def accuracy_reward(
    completions: list, answer: list[str] | None = None, options: list[list[str]] | None = None, **kwargs
) -> list[float]:
    r"""MedVLM-R1's accuracy reward on the content of the single `<answer>` block, stripped: exactly the correct letter
    -> 1.0; the correct letter followed by extra text (`"B, because ..."`, `"B: Labral pathology"`) or the correct
    option's text instead of the letter -> 0.5; anything else (wrong letter, several letters, missing or unclosed
    tag, several answer blocks) -> 0.0. The full reading rules are in this module's docstring.

    Args:
        completions: strings or TRL conversational completions.
        answer: the correct letter, one per completion (the dataset's `answer` column).
        options: the option texts, one list per completion (the dataset's `options` column).

    Raises:
        ValueError: when `answer` or `options` is missing (a dataset without the column) or has not one entry per
            completion; the message names the column.

    Example (MedVLM-R1, Fig. 1):
    ```python
    >>> completions = ["<think>The labrum is torn.</think><answer>B</answer>", "<answer>B, a labral tear</answer>"]
    >>> accuracy_reward(completions, answer=["B", "B"], options=[["Normal", "Labral pathology"]] * 2)
    [1.0, 0.5]
    ```
    """
    answer, options = _answer_columns("accuracy_reward", len(completions), answer, options, kwargs)
    return [score_answer(parse_completion(c).answer, a, o) for c, a, o in zip(completions, answer, options)]
