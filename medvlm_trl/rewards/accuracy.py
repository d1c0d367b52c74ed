"""MedVLM-R1's two rule-based rewards (Pan et al., section 3): the format reward and the accuracy reward.

Both are plain TRL reward functions, `fn(completions, **kwargs) -> list[float]`, and accept completions as strings or
in TRL's conversational form.

How `accuracy_reward` reads the content of the single `<answer>` block (stripped), in this order:

1. exactly the correct letter (upper case, as the prompt's `A) ...` option lines write it) -> 1.0; exactly another
   option's letter -> 0.0;
2. the text of one option instead of its letter (compared after Unicode NFKC normalisation, case-insensitively, with
   runs of whitespace collapsed and trailing periods dropped) -> 0.5 when it is the correct option's text, else 0.0.
   An option text that is itself a run of capitals (`CD`, blood group `AB`) is read as that text, not as letters;
3. a leading option letter, optionally after `(` or `[`, followed by a boundary (the end, whitespace, or one of
   `) ] . : , ;` or their full-width forms `） ］ 】 ． 。 ： ， ； 、`) -> the correct letter with extra text
   (`"B, because ..."`, `"B: Labral pathology"`, `"B) text"`, `"(B)"`, `"B."`, `"B，盂唇病变"`) -> 0.5; a wrong
   leading letter -> 0.0;
4. anything else (`"The answer is B"`, `"B/C"`, `"B?"`, `"**B**"`, a lower-case `"b"`, empty) -> 0.0.

The paper pays 0.5 for "the letter ... with additional explanations"; it is silent on hedges, but a policy learns to
hedge if hedging pays. So on rule 3 an answer that names another option next to the chosen one does not commit and
scores 0.0:

- another option's letter as a choice: a one-letter token (not part of a word or of a hyphenated word such as
  `D-dimer`) that stands after punctuation or at the start of the extra text (`"B, C"`, `"B (C)"`, `"B. D is
  wrong"`), or after a connector such as `or`, `and`, `not`, `vs`, `maybe`, `option` (`"B or C"`, `"B, not A"`,
  `"B or maybe D"`), in either case (`"B or c"`, `"B, c"`). A capital right after any other word is a name in prose, not a
  choice: `"B, consistent with vitamin D deficiency"`, `"B, as in hepatitis C"`, `"B, with a grade C tear"`,
  `"B, zone A of the labrum"` keep their 0.5. The correct option's own text is masked before this check, so
  `"B: Type C fracture"` scores 0.5 when option B reads "Type C fracture";
- another option's text next to a hedging word (`or`, `nor`, `either`, `otherwise`, `alternatively`, `else`,
  `maybe`, `perhaps`, `possibly`, `probably`, `instead`, `rather`, `vs`, `versus`), before or after it:
  `"B or Bone fracture"`, `"B: Labral pathology or Tendonitis"`, `"B, otherwise Cartilage degeneration"`. Another
  option's text in plain prose is not a hedge (`"A, no fracture"` with options Yes / No keeps its 0.5);
- the extra text is exactly another option's text (`"B) <text of option C>"`);
- `A` and `I` are English words: a leading `A` or `I` followed by a space or tab and then a word (`"A lesion is
  seen"`, `"I think B"`) is read as the word, not as a letter, and so are `A`, `I`, `a` and `i` followed by a word
  when the checks above look for other letters (`"B. A lesion is seen"`, `"B or a tear"` keep their 0.5).

`answer` must be one of the row's option letters (`"ABCDEF"[i]` for option i); otherwise the completion scores 0.0
(the data layer rejects such rows before they get here).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from .parsing import parse_completion

__all__ = ["accuracy_reward", "format_reward", "score_answer"]

# What may follow a leading option letter: the end, whitespace, or one of these (ASCII, and the full-width and
# ideographic forms a model trained on Chinese or Japanese text writes: `B，`, `B：`, `B。`, `B、`).
_SEPARATORS = ")].:,;" + "）］】．。：，；、"
_OPENERS = "([" + "（［【"
# A leading option letter: group 1 is the letter; what follows must be a boundary (checked in code for A and I).
_LEADING_LETTER = re.compile(rf"[{re.escape(_OPENERS)}]?([A-Z])(?=$|[\s{re.escape(_SEPARATORS)}])")
# A one-letter token: not glued to a letter, digit or underscore, and not half of a hyphenated word (`D-dimer`).
_LONE_LETTER = re.compile(r"(?<![\w-])[A-Za-z](?!\w|-\w)")
# Words after which a letter is another choice ("B or C", "B, not A", "B (option C)", "B, maybe D").
_CHOICE_WORDS = frozenset(
    "or nor and not vs versus either than also plus instead rather otherwise alternatively else maybe perhaps "
    "possibly probably option options choice choices answer answers letter letters is".split()
)
# Words next to which another option's text is a second choice ("B or Bone fracture", "B, otherwise Tendonitis").
_HEDGE_WORDS = frozenset(
    "or nor either versus vs otherwise alternatively else maybe perhaps possibly probably instead rather".split()
)
# Quotes, brackets and markdown skipped when looking for the word before a letter ("B, not 'A'", "B (C)").
_WRAPPERS = "'\"“”‘’`*_([{（［【「『"
# One-letter English words that look like option letters.
_WORD_LETTERS = frozenset("AIai")
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


def _fold(text: str) -> str:
    """NFKC-normalised (full-width forms become ASCII), case-folded, runs of whitespace collapsed to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _norm(text: str) -> str:
    """How option texts are compared: [`_fold`], then trailing periods and spaces dropped."""
    return _fold(text).rstrip(". 。")


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


def _followed_by_word(text: str, end: int) -> bool:
    """Whether a space or tab and then a word follow position `end` ("A lesion", "I think")."""
    if end >= len(text) or text[end] not in " \t":
        return False
    rest = text[end:].lstrip(" \t")
    return bool(rest) and rest[0].isalnum()


def _is_word_letter(text: str, end: int) -> bool:
    """Whether the letter ending at `end` is the English word `A`, `I`, `a` or `i` ("A lesion", "I think")."""
    return text[end - 1] in _WORD_LETTERS and _followed_by_word(text, end)


def _word_before(text: str, start: int) -> str | None:
    """The case-folded word right before `start`, quotes, brackets and spaces skipped; `""` when a punctuation mark
    comes first, `None` at the start of `text`."""
    i = start - 1
    while i >= 0 and (text[i] in _WRAPPERS or text[i].isspace()):
        i -= 1
    if i < 0:
        return None
    end = i + 1
    while i >= 0 and text[i].isalnum():  # walk back over the word (never copies the text before it)
        i -= 1
    return text[i + 1 : end].casefold()


def _word_after(text: str, end: int) -> str:
    match = re.match(r"[\s'\"“”‘’`*_)\]}）］】」』,;:.]*([^\W_]+)", text[end:])
    return match.group(1).casefold() if match else ""


def _names_other_letter(extra: str, correct: str, letters: str) -> bool:
    """Whether `extra` names another option letter as a choice (see the module docstring)."""
    for match in _LONE_LETTER.finditer(extra):
        letter = match.group()
        if letter.upper() == correct or letter.upper() not in letters or _is_word_letter(extra, match.end()):
            continue
        before = _word_before(extra, match.start())
        if before in _CHOICE_WORDS:
            return True
        # A capital after punctuation or at the start is a choice ("B, C", "B (C)"); after another word it is a name
        # in prose ("vitamin D"). A lower-case letter is a choice after a connector, as "c)", or after punctuation
        # when no word follows it ("B, c").
        if letter.isupper() and not before:
            return True
        rest = extra[match.end() :].lstrip()
        if letter.islower() and (rest[:1] == ")" or (not before and not rest[:1].isalnum())):
            return True
    return False


def _names_other_text(extra: str, correct_index: int, options: Sequence[str]) -> bool:
    """Whether `extra` names another option's text next to a hedging word (see the module docstring)."""
    text = _fold(extra)
    own = _norm(options[correct_index])
    own_spans = [m.span() for m in _whole(own).finditer(text)] if own else []
    for i, option in enumerate(options):
        other = _norm(option)
        if i == correct_index or not other or other == own:
            continue
        for match in _whole(other).finditer(text):
            if any(s <= match.start() and match.end() <= e for s, e in own_spans):
                continue  # a word of the correct option's own text ("pathology" inside "labral pathology")
            if _word_before(text, match.start()) in _HEDGE_WORDS or _word_after(text, match.end()) in _HEDGE_WORDS:
                return True
    return False


def _whole(text: str) -> re.Pattern:
    """`text` as a whole word or phrase."""
    return re.compile(r"(?<!\w)" + re.escape(text) + r"(?!\w)")


def score_answer(answer_text: str | None, answer: Any, options: Any) -> float:
    """Accuracy of one answer block's content (already stripped, `None` when there is no single block) against the
    correct letter `answer` and the row's `options`; the rules are in the module docstring. Never raises.

    Example:
    ```python
    >>> [score_answer(t, "B", ["Normal", "Labral pathology"]) for t in ["B", "B: Labral pathology", "A", None]]
    [1.0, 0.5, 0.0, 0.0]
    ```
    """
    if not answer_text or not isinstance(answer_text, str) or not isinstance(answer, str):
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
    if len(answer_text) == 1 and answer_text in letters:
        return 0.0  # a bare wrong letter, even if some option's text happens to read like a letter

    # The option's text instead of its letter (also an option text made of capitals, such as "CD" or "AB").
    correct_index = letters.index(correct)
    norm_opts = [_norm(o) for o in opts]
    norm_text = _norm(answer_text)
    if norm_text and norm_text in norm_opts:
        return 0.5 if norm_text == norm_opts[correct_index] else 0.0

    # A leading letter with extra text.
    match = _LEADING_LETTER.match(answer_text)
    if match is None or _is_word_letter(answer_text, match.end()):
        return 0.0
    if match.group(1) != correct:
        return 0.0
    extra = answer_text[match.end() :]
    norm_extra = _norm(extra.lstrip(" \t\n\r-" + _SEPARATORS))
    if norm_extra and norm_extra != norm_opts[correct_index] and norm_extra in norm_opts:
        return 0.0  # "B) <another option's text>"
    if _names_other_text(extra, correct_index, opts):
        return 0.0  # "B or <another option's text>"
    # Letters inside the correct option's own text ("B: Type C fracture") are not another choice: mask that text.
    own_text = unicodedata.normalize("NFKC", opts[correct_index]).strip()
    masked = unicodedata.normalize("NFKC", extra)
    if own_text:
        masked = re.sub(re.escape(own_text), " ", masked, flags=re.IGNORECASE)
    if _names_other_letter(masked, correct, letters):
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
