"""The one parser of completions: every reward, the evaluator and the reasoning metrics read completions through it.

MedVLM-R1 (Pan et al., section 3 and Fig. 1) asks the policy for

    <think> step-by-step reasoning </think><answer> B </answer>

and TRL hands a completion to a reward either as a plain string or in its conversational form,
`[{"role": "assistant", "content": "..."}]`, where `content` may also be a list of `{"type": "text", "text": ...}`
parts. [`completion_text`] turns either form into one string and [`parse_completion`] reads the two blocks out of it.

The rules, decided once here so that the rewards and the evaluator cannot disagree:

- Tags are matched exactly as written: lower case, no spaces or attributes (`<Think>` and `<think >` are not tags).
- A block is read only when it is unique: `think` is the text between the single `<think>` and the single `</think>`
  (which must come after it); with a tag missing, repeated or in the wrong order, `think` is `None`. The same holds for
  `answer`. A unique answer block is read wherever it stands, so `accuracy_reward` can score an answer whose format
  is off; the format itself is `format_reward`'s business.
- Both texts are returned stripped of surrounding whitespace.
- `format_ok` is the format rule of MedVLM-R1: each of the four tags occurs exactly once, the think block comes before
  the answer block, and nothing but whitespace (Python's `str.isspace`) stands before `<think>`, between `</think>` and
  `<answer>`, or after `</answer>`. Empty blocks are allowed by the rule and pass.
- Nothing raises: `None` or any object that is not one of the two forms reads as the empty string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"

__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "THINK_CLOSE",
    "THINK_OPEN",
    "Parsed",
    "completion_text",
    "parse_completion",
    "parse_text",
]


class Parsed(NamedTuple):
    """What a completion says: its reasoning, its answer (both stripped, `None` when the block is not unique) and
    whether it follows MedVLM-R1's format."""

    think: str | None
    answer: str | None
    format_ok: bool


_EMPTY = Parsed(None, None, False)


def _content_text(content: Any) -> str:
    """The text of a message's `content`: a string, or the concatenated text of its `{"type": "text"}` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        pieces = []
        for part in content:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, Mapping) and part.get("type", "text") == "text":
                text = part.get("text")
                if isinstance(text, str):
                    pieces.append(text)
        return "".join(pieces)
    return ""


def _message_text(message: Mapping) -> str:
    if "content" in message:
        return _content_text(message["content"])
    # A bare text part, `{"type": "text", "text": ...}`, passed where a message was expected.
    return _content_text([message])


def completion_text(completion: Any) -> str:
    """The text of a completion in any of TRL's forms; never raises.

    - `str` -> itself;
    - conversational, `[{"role": "assistant", "content": ...}]` -> the assistant messages' text, joined by newlines
      (tool and user messages of a multi-turn completion are skipped);
    - `content` as a list of `{"type": "text", "text": ...}` parts -> the parts' text, concatenated;
    - anything else (`None`, numbers, bytes) -> `""`.

    Example:
    ```python
    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "<answer>B</answer>"}]}])
    '<answer>B</answer>'
    ```
    """
    if isinstance(completion, str):
        return completion
    try:
        if isinstance(completion, Mapping):
            return _message_text(completion)
        if isinstance(completion, (list, tuple)):
            texts = [
                _message_text(message)
                for message in completion
                if isinstance(message, Mapping) and message.get("role", "assistant") in ("assistant", None)
            ]
            return "\n".join(texts)
    except Exception:  # a hostile Mapping or sequence: the contract says rewards never raise on a completion
        return ""
    return ""


def _block(text: str, open_tag: str, close_tag: str) -> tuple[int, int]:
    """Start of the unique `open_tag` and of the unique `close_tag` after it, or (-1, -1)."""
    start = text.find(open_tag)
    if start < 0 or text.find(open_tag, start + len(open_tag)) >= 0:
        return -1, -1
    end = text.find(close_tag)
    if end < start + len(open_tag) or text.find(close_tag, end + len(close_tag)) >= 0:
        return -1, -1
    return start, end


def _blank(text: str) -> bool:
    return not text or text.isspace()


def parse_text(text: str) -> Parsed:
    """[`parse_completion`] for a string already in hand."""
    t_start, t_end = _block(text, THINK_OPEN, THINK_CLOSE)
    a_start, a_end = _block(text, ANSWER_OPEN, ANSWER_CLOSE)
    think = text[t_start + len(THINK_OPEN) : t_end].strip() if t_start >= 0 else None
    answer = text[a_start + len(ANSWER_OPEN) : a_end].strip() if a_start >= 0 else None
    format_ok = (
        t_start >= 0
        and a_start >= 0
        and t_end + len(THINK_CLOSE) <= a_start
        and _blank(text[:t_start])
        and _blank(text[t_end + len(THINK_CLOSE) : a_start])
        and _blank(text[a_end + len(ANSWER_CLOSE) :])
    )
    return Parsed(think, answer, format_ok)


def parse_completion(completion: Any) -> Parsed:
    """Read the think text, the answer text and the format verdict out of one completion (see the module docstring
    for the rules). Accepts every form [`completion_text`] accepts; never raises.

    Example (MedVLM-R1, Fig. 1):
    ```python
    >>> parse_completion("<think>The image shows a labral tear.</think><answer>B</answer>")
    Parsed(think='The image shows a labral tear.', answer='B', format_ok=True)
    >>> parse_completion([{"role": "assistant", "content": "<answer>B</answer>"}])
    Parsed(think=None, answer='B', format_ok=False)
    ```
    """
    text = completion_text(completion)
    if not text:
        return _EMPTY
    return parse_text(text)
