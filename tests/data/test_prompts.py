"""The papers' prompts, character for character, and options rendered as the MedVLM-R1 data renders them."""

from __future__ import annotations

import json
import textwrap

import pytest
from test_data_layouts import REAL_MANIFEST, needs_real_manifest

from medvlm_trl.data.prompts import (
    R1_TEMPLATE,
    REASONING_TEMPLATES,
    SIMPLE_TEMPLATE,
    STUDY_TEMPLATE,
    add_prompt,
    build_prompt,
    format_options,
    prompt_text,
    question_with_options,
)

# MedVLM-R1's question template exactly as its released training code writes it (open_r1/grpo.py): an indented
# triple-quoted string with trailing spaces on some lines. The paper's Fig. 1 shows the same sentences without
# that indentation, which is what the library uses.
RELEASED_R1_TEMPLATE = (
    "\n"
    "        {Question} \n"
    "        Your task: \n"
    "        1. Think through the question step by step, enclose your reasoning process in <think>...</think> tags. \n"
    "        2. Then provide the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags.\n"
    "        3. No extra information or text outside of these tags.\n"
    "        "
)
# The baselines' simple prompt (MedVLM-R1 section 4) and the RL-MedVQA study's reasoning prompt, as the papers word
# them (the study's text is R1-V's template without "(number)").
PAPER_SIMPLE = "{Question} Your task: provide the correct single-letter choice (A, B, C, D, ...)"
PAPER_STUDY = "{Question} Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."


def test_r1_template_is_the_released_wording_without_its_code_indentation():
    unindented = "\n".join(line.rstrip() for line in textwrap.dedent(RELEASED_R1_TEMPLATE).strip().splitlines())
    assert R1_TEMPLATE == unindented


def test_simple_and_study_templates_are_the_papers_wording():
    assert SIMPLE_TEMPLATE == PAPER_SIMPLE
    assert STUDY_TEMPLATE == PAPER_STUDY


def test_only_the_reasoning_templates_ask_for_think_and_answer_tags():
    templates = {"r1": R1_TEMPLATE, "simple": SIMPLE_TEMPLATE, "study": STUDY_TEMPLATE}
    assert REASONING_TEMPLATES == {"r1", "study"}
    for name, text in templates.items():
        asks = all(tag in text for tag in ("<think>", "</think>", "<answer>", "</answer>"))
        assert asks == (name in REASONING_TEMPLATES), name
        assert text.count("{Question}") == 1


def test_options_render_as_letter_parenthesis_lines():
    assert format_options(["CT", "MRI"]) == "A) CT\nB) MRI"
    assert format_options([f"o{i}" for i in range(6)]).splitlines()[-1] == "F) o5"
    for count in (1, 7):
        with pytest.raises(ValueError, match="expected 2 to 6 options"):
            format_options(["x"] * count)


def test_the_question_fills_the_template_followed_by_its_options():
    text = prompt_text("  What is shown? ", ["Hemorrhage", "Infarct"], "r1")
    assert text.startswith("What is shown?\nA) Hemorrhage\nB) Infarct\nYour task:\n1. Think through")
    assert prompt_text("Q?", ["a", "b"], "simple") == PAPER_SIMPLE.format(Question="Q?\nA) a\nB) b")
    with pytest.raises(ValueError, match="prompt template must be one of .*got 'cot'"):
        prompt_text("Q?", ["a", "b"], "cot")


@needs_real_manifest
def test_options_render_exactly_as_the_authors_test_rows_do():
    with open(REAL_MANIFEST) as fh:
        rows = json.load(fh)
    assert all(question_with_options(r["question"], r["options"]) == r["problem"] for r in rows)


def test_conversational_prompt_has_the_image_placeholders_first():
    prompt = build_prompt("Q?", ["a", "b"], "study")
    assert prompt == [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": prompt_text("Q?", ["a", "b"], "study")}],
        }
    ]
    row = {"question": "Q?", "options": ["a", "b"], "images": ["x.png", "y.png"]}
    content = add_prompt(row, "r1")["prompt"][0]["content"]
    assert [part["type"] for part in content] == ["image", "image", "text"]


# The RL-MedVQA study, Figs. S2-S5: PMC-VQA's own option rendering on the question line.
STUDY_QUESTION = (
    "What area of the body is the CT scan focusing on? Choose between the following options: "
    "A:Thorax , B:Abdomen , C:Head , D:Limbs"
)


def test_study_prompt_renders_options_as_the_study_shows_them():
    options = ["Thorax", "Abdomen", "Head", "Limbs"]
    question = "What area of the body is the CT scan focusing on?"
    assert question_with_options(question, options, "study") == STUDY_QUESTION
    assert prompt_text(question, options, "study") == PAPER_STUDY.format(Question=STUDY_QUESTION)
    assert prompt_text(question, options, "study").endswith(
        "D:Limbs Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    )
    # MedVLM-R1's templates keep their own `A) text` lines.
    assert "\nA) Thorax\nB) Abdomen" in prompt_text(question, options, "r1")
    with pytest.raises(ValueError, match="expected 2 to 6 options"):
        question_with_options(question, ["x"], "study")
