"""A per-row audit of the reasoning, beyond what either paper reports: does the `<think>` text support the answer?

MedVLM-R1 (Pan et al., section 4, failure cases) notes reasoning that is superficial or that does not lead to the
answer given; accuracy alone hides both. For every completion of a reasoning prompt we record

- `empty_think`: no single `<think>` block, or an empty one;
- `superficial_think`: a think block with fewer than `min_think_words` whitespace-separated words (but not empty);
- `think_letter`: the option the reasoning concludes for, when it says so clearly (see [`think_conclusion`]);
- `answer_letter`: the option the `<answer>` block names, read by the accuracy reward's rules
  ([`medvlm_trl.rewards.score_answer`]): a bare letter, a leading letter with extra text (`"B: ..."`) or an option's
  exact text; a hedge (`"A or B"`) or an English `"A"` (`"A lesion ..."`) names none;
- `mismatch`: both letters are known and differ (the think text argues for C, the answer tag says B).

The conclusion is read conservatively, so that a mismatch is a clear case, never a guess: the last explicit option
reference (`"answer is C"`, `"option C"`, `"(C)"`, `"C)"`, but not the `"B)"` that closes an aside such as `"(in
segment B)"`) wins; without one, the last sentence that names exactly one option's text, with no negation in it
(`"not"`, `"no"`, `"unlikely"`, `"rule out"`, ...), decides; otherwise the conclusion is unknown and the row is not
counted as a mismatch. The rates are reported beside accuracy in the eval summary (as % of all rows of the group).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from medvlm_trl.data.schema import LETTERS
from medvlm_trl.rewards import parse_completion, score_answer

__all__ = ["DEFAULT_MIN_THINK_WORDS", "answer_letter", "audit_completion", "consistency_rates", "think_conclusion"]

DEFAULT_MIN_THINK_WORDS = 10

# Explicit references to an option letter. The letter must be a capital standing alone ("option C", "(C)", "C)"),
# so that words such as "A lesion" or "CT" are not read as letters.
_LETTER_REFS = [
    re.compile(
        r"(?i:\b(?:answer|option|choice)\b)(?:\s+(?i:is|would\s+be|should\s+be|must\s+be|seems\s+to\s+be))?"
        r"\s*[:=\-]?\s*\(?([A-F])\b(?![-'])"
    ),
    re.compile(r"\(([A-F])\)"),
]
# A bare "C)" is a reference too ("Between B) and D) ..."), unless its ")" closes a parenthesis opened earlier on the
# line: in "(in segment B)" the "B" is a word of the aside, not option B.
_BARE_LETTER_REF = re.compile(r"(?<![\w(])([A-F])\)")
_NEGATION = re.compile(r"(?i)\b(?:not|no|never|unlikely|rule[sd]?\s+out|ruling\s+out|exclude[sd]?|rather\s+than)\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _closes_open_parenthesis(text: str, pos: int) -> bool:
    """Whether a ")" at `pos` closes a "(" opened earlier on its line (a ")" with nothing open closes nothing)."""
    depth = 0
    for char in text[text.rfind("\n", 0, pos) + 1 : pos]:
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
    return depth > 0


def _norm(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(". ")


def _option_spans(sentence: str, options: Sequence[str]) -> set[int]:
    """Indices of the options whose text occurs in `sentence` as whole words; longer texts first, so that "Acute
    infarct" is not also counted as "infarct"."""
    lowered = sentence.casefold()
    taken = [False] * len(lowered)
    found: set[int] = set()
    order = sorted(range(len(options)), key=lambda i: -len(options[i]))
    for i in order:
        text = _norm(options[i])
        if not text:
            continue
        for match in re.finditer(r"(?<!\w)" + re.escape(text) + r"(?!\w)", lowered):
            if not any(taken[match.start() : match.end()]):
                found.add(i)
                for j in range(match.start(), match.end()):
                    taken[j] = True
    return found


def think_conclusion(think: str | None, options: Sequence[str]) -> str | None:
    """The option letter the reasoning clearly concludes for, or None (see the module docstring for the reading).

    Example:
    ```python
    >>> think_conclusion("T2 bright signal in the labrum. The answer is C.", ["Normal", "Effusion", "Labral tear"])
    'C'
    >>> think_conclusion("This is not a CT image.", ["CT", "MRI"]) is None
    True
    ```
    """
    if not think or not options:
        return None
    letters = LETTERS[: len(options)]
    last_pos, last_letter = -1, None
    matches = [m for pattern in _LETTER_REFS for m in pattern.finditer(think)]
    matches += [m for m in _BARE_LETTER_REF.finditer(think) if not _closes_open_parenthesis(think, m.end(1))]
    for match in matches:
        if match.group(1) in letters and match.start(1) > last_pos:
            last_pos, last_letter = match.start(1), match.group(1)
    if last_letter is not None:
        return last_letter
    for sentence in reversed([s for s in _SENTENCE_END.split(think) if s.strip()]):
        named = _option_spans(sentence, options)
        if not named:
            continue
        if len(named) == 1 and not _NEGATION.search(sentence):
            return letters[named.pop()]
        return None  # the concluding sentence names several options, or negates one: no clear conclusion
    return None


def answer_letter(answer_text: str | None, options: Sequence[str]) -> str | None:
    """The option the answer block names: the one letter the accuracy reward would pay anything for (the exact
    letter, the letter with extra text, or the option's text); else None."""
    if not answer_text or not options:
        return None
    named = [letter for letter in LETTERS[: len(options)] if score_answer(answer_text.strip(), letter, options) > 0]
    return named[0] if len(named) == 1 else None


def audit_completion(
    completion: Any, options: Sequence[str], min_think_words: int = DEFAULT_MIN_THINK_WORDS
) -> dict[str, Any]:
    """The audit record of one completion (the keys of the module docstring, plus `think_words`).

    Example:
    ```python
    >>> audit = audit_completion("<think>Bright labrum, so the answer is C.</think><answer>B</answer>", ["a", "b", "c"])
    >>> audit["think_letter"], audit["answer_letter"], audit["mismatch"], audit["superficial_think"]
    ('C', 'B', True, True)
    ```
    """
    if isinstance(min_think_words, bool) or not isinstance(min_think_words, int) or min_think_words < 1:
        raise ValueError(f"min_think_words must be a positive integer, got {min_think_words!r}")
    parsed = parse_completion(completion)
    think = parsed.think or ""
    words = len(think.split())
    think_letter = think_conclusion(think, options)
    given = answer_letter(parsed.answer, options)
    return {
        "think_words": words,
        "empty_think": words == 0,
        "superficial_think": 0 < words < min_think_words,
        "think_letter": think_letter,
        "answer_letter": given,
        "mismatch": think_letter is not None and given is not None and think_letter != given,
    }


def consistency_rates(audits: Iterable[Mapping[str, Any]]) -> dict[str, float | int]:
    """Rates (% of all audited rows) of mismatch, empty and superficial reasoning, and how often a conclusion could be
    read at all (`conclusion_found_rate`), so a low mismatch rate from unreadable reasoning shows as such."""
    audits = list(audits)
    n = len(audits)
    if n == 0:
        return {"n": 0}

    def rate(key: str) -> float:
        return 100.0 * sum(bool(a.get(key)) for a in audits) / n

    return {
        "n": n,
        "mismatch_rate": rate("mismatch"),
        "empty_think_rate": rate("empty_think"),
        "superficial_think_rate": rate("superficial_think"),
        "conclusion_found_rate": 100.0 * sum(a.get("think_letter") is not None for a in audits) / n,
    }
