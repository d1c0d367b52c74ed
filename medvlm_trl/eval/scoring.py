"""How a test question is scored, and the random-guess row (MedVLM-R1, Pan et al., section 4 and Table 1).

Three rules, all reading completions through the shared parser [`medvlm_trl.rewards.parse_completion`]; each
table row says which one its eval used (`summary.json`'s `scoring`, the protocol files' `answer_rule`):

- `score_strict` (reasoning prompts `r1` and `study`): MedVLM-R1's test rule. 1.0 only when the content of the single
  `<answer>` block, stripped, is exactly the correct letter; anything else scores 0.0, even when it is semantically
  right (`"B: Labral pathology"`, the option's text, `"b"`). This is stricter than the training reward
  (`accuracy_reward` pays 0.5 for such answers). The authors' script (`src/eval/test_qwen2vl_med.py`) takes the first
  `<answer>\\s*[A-Z]\\s*</answer>` it finds; with several answer blocks we read none (the shared parser only reads a
  unique block), so a completion that hedges with two answer blocks scores 0.0 here.
- `score_study` (the RL-MedVQA study's rows, reasoning prompt `study`): the study's example answers are often the
  option's text, not its letter (`<answer>Confocal microscope</answer>`, `<answer> Barbed suture. </answer>`), and are
  counted right by that text. 1.0 when the content of the single `<answer>` block is the correct capital letter (`B`, `B.`,
  `(B)`, `B)`), the correct option's text, or both (`B:Abdomen`, as PMC-VQA writes its choices, `B) Abdomen`); texts
  are compared after Unicode NFKC normalisation, case-folded, with runs of whitespace collapsed and surrounding
  punctuation and quotes dropped. Anything else, a wrong letter with the right text included, scores 0.0.
- `score_letter` (the `simple` prompt of the zero-shot and SFT baselines): the reply, stripped of surrounding
  whitespace, must be a bare option letter. The authors compared the raw reply with the letter, with no tolerance at
  all; we accept exactly three punctuated spellings of a bare letter as well, because they carry no other content:
  `"B."`, `"B)"` and `"(B)"`. Nothing else passes: no lower case, no option text (`"B) Acute infarct"`), no
  sentence (`"The answer is B"`), no tags (`"<answer>B</answer>"`), no markdown (`"**B**"`).

The random-guess row is computed from the test rows, never typed in: the mean over rows of 1/len(options), per
modality. On MedVLM-R1's test manifest it gives 25.00 (MRI), 30.25 (CT) and 26.00 (X-ray).
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from medvlm_trl.rewards import completion_text, parse_completion

__all__ = [
    "SCORING_RULES",
    "parsed_answer",
    "random_guess_accuracy",
    "score_completion",
    "score_letter",
    "score_strict",
    "score_study",
]

# The rules by the name `summary.json` records: MedVLM-R1's strict rule, the study's rule, the baselines' letter rule.
SCORING_RULES = ("strict", "study", "letter")
# A bare capital letter, optionally as "B." / "B)" / "(B)"; `fullmatch` is used, so nothing may surround it.
_BARE_LETTER = re.compile(r"\(([A-Z])\)|([A-Z])[.)]?")
# The study's rule: a letter alone (`B`, `B.`, `(B)`, `[B]`, `B:`) ...
_STUDY_LETTER = re.compile(r"[(\[]?([A-Z])[)\]]?[.:)]?")
# ... or a letter, separators, then text (`B:Abdomen`, `B) Abdomen`, `(B) Abdomen`, `B - Abdomen`).
_STUDY_LETTER_TEXT = re.compile(r"[(\[]?([A-Z])[)\]]?(?:\s*[:.)\-]\s*|\s+)(.+)", re.DOTALL)
_STUDY_STRIP = " \t\n\r.,;:!?*_`'\"“”‘’()[]"


def _check_answer(answer: Any) -> str:
    """The correct letter, validated: a data bug (a lower-case or missing answer) must fail loudly, not score 0."""
    if not isinstance(answer, str) or len(answer) != 1 or not ("A" <= answer <= "Z"):
        raise ValueError(f"the correct answer must be one capital option letter, got {answer!r}")
    return answer


def score_strict(completion: Any, answer: str) -> float:
    """MedVLM-R1's test rule: 1.0 when the stripped content of the single `<answer>` block is exactly `answer`.

    Example:
    ```python
    >>> [score_strict(c, "B") for c in ["<think>torn labrum</think><answer> B </answer>", "<answer>B: tear</answer>"]]
    [1.0, 0.0]
    ```
    """
    answer = _check_answer(answer)
    return 1.0 if parse_completion(completion).answer == answer else 0.0


def _study_norm(text: str) -> str:
    """NFKC-normalised, case-folded, whitespace collapsed, surrounding punctuation and quotes dropped."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split()).strip(_STUDY_STRIP)


def score_study(completion: Any, answer: str, options: Any) -> float:
    """The RL-MedVQA study's rule: 1.0 when the single `<answer>` block holds the correct letter, the correct option's
    text (normalised), or the letter with that text (see the module docstring); else 0.0.

    Example:
    ```python
    >>> options = ["Light microscope", "Confocal microscope"]
    >>> [score_study(f"<answer>{a}</answer>", "B", options) for a in ["B", "confocal microscope.", "B:Confocal microscope", "A"]]
    [1.0, 1.0, 1.0, 0.0]
    ```
    """
    answer = _check_answer(answer)
    if (
        not isinstance(options, (list, tuple))
        or not 2 <= len(options) <= 26
        or not all(isinstance(o, str) for o in options)
    ):
        raise ValueError(f"the study's rule needs the row's options (2 or more texts), got {options!r}")
    index = ord(answer) - ord("A")
    if index >= len(options):
        raise ValueError(f"the correct answer {answer!r} is not among the {len(options)} options")
    content = parse_completion(completion).answer
    if not content:
        return 0.0
    text = unicodedata.normalize("NFKC", content).strip()
    correct_text = _study_norm(options[index])
    letter = _STUDY_LETTER.fullmatch(text)
    if letter is not None:
        return 1.0 if letter.group(1) == answer else 0.0
    if correct_text and _study_norm(text) == correct_text:
        return 1.0
    with_text = _STUDY_LETTER_TEXT.fullmatch(text)
    if with_text is not None and with_text.group(1) == answer and _study_norm(with_text.group(2)) == correct_text:
        return 1.0
    return 0.0


def _bare_letter(completion: Any) -> str | None:
    match = _BARE_LETTER.fullmatch(completion_text(completion).strip())
    return None if match is None else (match.group(1) or match.group(2))


def score_letter(completion: Any, answer: str) -> float:
    """The baselines' rule: 1.0 when the whole reply is the bare correct letter (`"B"`, `"B."`, `"B)"`, `"(B)"`, with
    surrounding whitespace ignored), else 0.0.

    Example:
    ```python
    >>> [score_letter(c, "B") for c in ["B", " (B)\\n", "B) Acute infarct", "The answer is B", "b"]]
    [1.0, 1.0, 0.0, 0.0, 0.0]
    ```
    """
    answer = _check_answer(answer)
    return 1.0 if _bare_letter(completion) == answer else 0.0


def _rule(rule: str | bool) -> str:
    """A rule name; `True` / `False` (reasoning prompt or not) mean `strict` / `letter`."""
    if isinstance(rule, bool):
        return "strict" if rule else "letter"
    if rule not in SCORING_RULES:
        raise ValueError(f"unknown scoring rule {rule!r}; choose one of {list(SCORING_RULES)}")
    return rule


def parsed_answer(completion: Any, rule: str | bool) -> str | None:
    """What the scoring rule read: the stripped `<answer>` content (strict, study), or the bare letter (letter)."""
    return _bare_letter(completion) if _rule(rule) == "letter" else parse_completion(completion).answer


def score_completion(completion: Any, answer: str, rule: str | bool, options: Any = None) -> float:
    """Score one completion by the named rule (`strict`, `study` with the row's `options`, or `letter`)."""
    rule = _rule(rule)
    if rule == "study":
        return score_study(completion, answer, options)
    return score_strict(completion, answer) if rule == "strict" else score_letter(completion, answer)


def random_guess_accuracy(rows: Iterable[Mapping], by: str | None = "modality") -> dict[str, float]:
    """Expected accuracy (%) of a uniform guess: the mean of 100/len(options) over the rows, per value of the column
    `by` (`by=None`: over all rows, under the key `"all"`).

    Example:
    ```python
    >>> random_guess_accuracy([{"modality": "CT", "options": ["a", "b"]}, {"modality": "CT", "options": list("abcd")}])
    {'CT': 37.5}
    ```
    """
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for i, row in enumerate(rows):
        options = row.get("options")
        if not isinstance(options, (list, tuple)) or len(options) < 2:
            raise ValueError(f"row {row.get('id', i)!r}: needs a list of at least 2 options, got {options!r}")
        if by is not None and by not in row:
            raise ValueError(f"row {row.get('id', i)!r}: has no {by!r} column")
        key = "all" if by is None else str(row[by])
        sums[key] += 100.0 / len(options)
        counts[key] += 1
    return {key: sums[key] / counts[key] for key in sorted(sums)}
