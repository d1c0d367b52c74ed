"""The papers' prompts, word for word, and the one place a conversational prompt is built.

A recipe chooses a template by name: `r1`, `simple` or `study`. Options are rendered as each paper shows them:

- `r1` and `simple` (MedVLM-R1, Fig. 1 and its test manifest): the question, then one `A) text` line per option;
- `study` (the RL-MedVQA study, Figs. S2-S5, PMC-VQA's own rendering): the question, then on the same line
  `Choose between the following options: A:Thorax , B:Abdomen , C:Head , D:Limbs`, under the study's instruction
  sentence (Fig. S5).
"""

from __future__ import annotations

from collections.abc import Sequence

from medvlm_trl.data.schema import LETTERS, num_images

# MedVLM-R1, Fig. 1. (The authors' released code has the same sentences inside an indented triple-quoted string, so
# its prompts carry extra leading spaces per line; we use the paper's wording without that indentation.)
R1_TEMPLATE = (
    "{Question}\n"
    "Your task:\n"
    "1. Think through the question step by step, enclose your reasoning process in <think>...</think> tags.\n"
    "2. Then provide the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags.\n"
    "3. No extra information or text outside of these tags."
)
# The baselines' simple prompt (MedVLM-R1 section 4, zero-shot and SFT rows).
SIMPLE_TEMPLATE = "{Question} Your task: provide the correct single-letter choice (A, B, C, D, ...)"
# The RL-MedVQA study's prompt: its instruction sentence (Fig. S5) after the question.
STUDY_TEMPLATE = (
    "{Question} Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
)

TEMPLATES = {"r1": R1_TEMPLATE, "simple": SIMPLE_TEMPLATE, "study": STUDY_TEMPLATE}
# Which completions a template asks for: reasoning templates are scored inside <answer>.
REASONING_TEMPLATES = {"r1", "study"}
# The study's option rendering (Figs. S2-S5): PMC-VQA's `Choose between the following options:` and `LETTER:text`
# items joined by " , ".
STUDY_OPTIONS_LEAD = "Choose between the following options: "
STUDY_OPTIONS_SEPARATOR = " , "


def format_options(options: Sequence[str]) -> str:
    """`["CT", "MRI"]` -> `"A) CT\\nB) MRI"`."""
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"expected 2 to {len(LETTERS)} options, got {len(options)}")
    return "\n".join(f"{LETTERS[i]}) {text}" for i, text in enumerate(options))


def format_study_options(options: Sequence[str]) -> str:
    """The study's rendering: `["Thorax", "Abdomen"]` -> `"Choose between the following options: A:Thorax , B:Abdomen"`."""
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"expected 2 to {len(LETTERS)} options, got {len(options)}")
    items = STUDY_OPTIONS_SEPARATOR.join(f"{LETTERS[i]}:{text.strip()}" for i, text in enumerate(options))
    return STUDY_OPTIONS_LEAD + items


def question_with_options(question: str, options: Sequence[str], template: str = "r1") -> str:
    """The question with its options as the template's paper renders them: for `r1` / `simple` the `problem` text of
    the HuatuoGPT-Vision rows (the question, a newline, then the option lines); for `study` the question, a space and
    [`format_study_options`]."""
    if template == "study":
        return f"{question.strip()} {format_study_options(options)}"
    return f"{question.strip()}\n{format_options(options)}"


def check_template(name: str, key: str = "prompt template") -> str:
    """The one prompt-name rule of every command: `name` must be a template of `TEMPLATES`; `key` is the recipe key
    or flag that gave it, for the message.

    >>> check_template("r2", "prompt")
    Traceback (most recent call last):
    ...
    ValueError: prompt must be one of ['r1', 'simple', 'study'], got 'r2'
    """
    if name not in TEMPLATES:
        raise ValueError(f"{key} must be one of {sorted(TEMPLATES)}, got {name!r}")
    return name


def get_template(name: str) -> str:
    return TEMPLATES[check_template(name)]


def prompt_text(question: str, options: Sequence[str], template: str = "r1") -> str:
    """The user turn's text for one row under a named template."""
    return get_template(template).format(Question=question_with_options(question, options, template))


def build_prompt(question: str, options: Sequence[str], template: str = "r1", num_images: int = 1) -> list[dict]:
    """TRL's conversational prompt: one user turn with the image placeholder(s) first, then the text."""
    content = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": prompt_text(question, options, template)})
    return [{"role": "user", "content": content}]


def add_prompt(row: dict, template: str = "r1") -> dict:
    """Dataset `.map` helper: adds the contract's `prompt` column to an example row."""
    return {"prompt": build_prompt(row["question"], row["options"], template, num_images(row))}
