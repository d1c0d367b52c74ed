"""MedVLM-R1's format and accuracy rewards, one test per sentence of the CONTRACT rule (and per decision the rule leaves
to us, as documented in `medvlm_trl/rewards/accuracy.py`). Every case runs on plain and conversational completions."""

import pytest
from helpers import as_message, as_str

from medvlm_trl.rewards import accuracy_reward, format_reward

# MedVLM-R1, Fig. 1: an MRI question whose correct option is B; the model reasons, then answers B.
FIG1_OPTIONS = ["Normal", "Labral pathology", "Fracture", "Effusion"]
FIG1 = (
    "<think>The image shows an MRI of the hip. There is an abnormal signal along the acetabular labrum, which points to "
    "labral pathology rather than a fracture or an effusion.</think><answer>B</answer>"
)


def as_parts(text):
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


@pytest.fixture(params=[as_str, as_message, as_parts], ids=["str", "message", "parts"])
def form(request):
    return request.param


def fmt(form, text):
    return format_reward([form(text)])[0]


def acc(form, content, answer="B", options=FIG1_OPTIONS, wrap=True):
    text = f"<think>reasoning</think><answer>{content}</answer>" if wrap else content
    return accuracy_reward([form(text)], answer=[answer], options=[options])[0]


# ---------------------------------------------------------------------------------------------------------------------
# format_reward
# ---------------------------------------------------------------------------------------------------------------------
def test_format_fig1_example(form):
    assert fmt(form, FIG1) == 1.0


def test_format_each_tag_exactly_once(form):
    assert fmt(form, "<think>r</think><answer>B</answer>") == 1.0
    assert fmt(form, "<think>r</think><think>s</think><answer>B</answer>") == 0.0
    assert fmt(form, "<think>r</think><answer>B</answer><answer>B</answer>") == 0.0
    assert fmt(form, "<think><think>r</think><answer>B</answer>") == 0.0
    assert fmt(form, "<think>r</think><answer>B</answer></answer>") == 0.0


@pytest.mark.parametrize("missing", ["<think>", "</think>", "<answer>", "</answer>"])
def test_format_missing_tag(form, missing):
    assert fmt(form, "<think>r</think><answer>B</answer>".replace(missing, "")) == 0.0


def test_format_think_before_answer(form):
    assert fmt(form, "<answer>B</answer><think>r</think>") == 0.0
    assert fmt(form, "<think>r<answer>B</answer></think>") == 0.0  # answer nested in think
    assert fmt(form, "</think>r<think><answer>B</answer>") == 0.0  # tags out of order


def test_format_only_whitespace_outside_blocks(form):
    assert fmt(form, " \n<think>r</think>\n\n<answer>B</answer>\n") == 1.0
    assert fmt(form, "Answer: <think>r</think><answer>B</answer>") == 0.0
    assert fmt(form, "<think>r</think>\nSo:\n<answer>B</answer>") == 0.0
    assert fmt(form, "<think>r</think><answer>B</answer>\nHope this helps") == 0.0


def test_format_whitespace_between_blocks_allowed(form):
    assert fmt(form, "<think>r</think> \t\n <answer>B</answer>") == 1.0


def test_format_is_blind_to_content(form):
    assert fmt(form, "<think></think><answer>not even a letter</answer>") == 1.0


def test_format_one_float_per_completion():
    out = format_reward([FIG1, "", None, [{"role": "assistant", "content": FIG1}]])
    assert out == [1.0, 0.0, 0.0, 1.0]
    assert all(type(v) is float for v in out)


# ---------------------------------------------------------------------------------------------------------------------
# accuracy_reward: "Content of the single <answer> block, stripped"
# ---------------------------------------------------------------------------------------------------------------------
def test_accuracy_fig1_example(form):
    assert accuracy_reward([form(FIG1)], answer=["B"], options=[FIG1_OPTIONS]) == [1.0]


def test_accuracy_content_is_stripped(form):
    assert acc(form, "\n  B \t\n") == 1.0


def test_accuracy_does_not_need_the_format(form):
    assert acc(form, "Sure. <answer>B</answer> Done.", wrap=False) == 1.0


# "exactly the correct letter -> 1.0"
def test_accuracy_exact_letter(form):
    assert acc(form, "B") == 1.0
    assert acc(form, "A", answer="A") == 1.0
    assert acc(form, "D", answer="D") == 1.0


def test_accuracy_letter_is_upper_case(form):
    assert acc(form, "b") == 0.0


def test_accuracy_answer_column_tolerates_whitespace_and_case(form):
    assert acc(form, "B", answer=" b ") == 1.0


# "the correct letter followed by extra text ("B, because ...", "B: Labral pathology") -> 0.5"
@pytest.mark.parametrize(
    "content",
    [
        "B, because the labrum shows an abnormal signal",
        "B: Labral pathology",
        "B) Labral pathology",
        "B. Labral pathology",
        "B - the labrum is torn",
        "B\nThe labrum is torn.",
        "B.",
        "(B)",
        "(B) Labral pathology",
        "[B]",
        "B; labral tear",
    ],
)
def test_accuracy_letter_with_extra_text(form, content):
    assert acc(form, content) == 0.5


# "or the correct option's text instead of the letter -> 0.5"
@pytest.mark.parametrize(
    "content", ["Labral pathology", "labral pathology", "LABRAL  PATHOLOGY", "Labral pathology.", " labral\npathology "]
)
def test_accuracy_option_text_instead_of_letter(form, content):
    assert acc(form, content) == 0.5


def test_accuracy_option_text_of_a_wrong_option(form):
    assert acc(form, "Fracture") == 0.0


def test_accuracy_yes_no_options(form):
    assert acc(form, "Yes", answer="A", options=["Yes", "No"]) == 0.5
    assert acc(form, "No", answer="A", options=["Yes", "No"]) == 0.0
    assert acc(form, "A", answer="A", options=["Yes", "No"]) == 1.0


def test_accuracy_option_text_looking_like_a_letter_prefix(form):
    # "B-cell lymphoma" is option C's text; "B" followed by "-" is no letter.
    options = ["T-cell lymphoma", "Carcinoma", "B-cell lymphoma"]
    assert acc(form, "B-cell lymphoma", answer="C", options=options) == 0.5
    assert acc(form, "B-cell lymphoma", answer="B", options=options) == 0.0


def test_accuracy_a_bare_letter_is_a_letter_even_if_an_option_reads_like_it(form):
    options = ["Type A", "Type B", "B"]  # option C's text is "B"
    assert acc(form, "B", answer="C", options=options) == 0.0
    assert acc(form, "B", answer="B", options=options) == 1.0


# "anything else (wrong letter, several letters, missing or unclosed tag) -> 0.0"
@pytest.mark.parametrize("content", ["A", "C", "D", "A: Normal", "(A)", "A) Labral pathology"])
def test_accuracy_wrong_letter(form, content):
    assert acc(form, content) == 0.0


@pytest.mark.parametrize(
    "content", ["A or B", "B or A", "A, B", "B, C", "B and C", "B/C", "B (or C)", "B, not A", "A B", "B or maybe D"]
)
def test_accuracy_several_letters(form, content):
    assert acc(form, content) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "<think>r</think>B",  # missing answer tag
        "<think>r</think><answer>B",  # unclosed
        "<think>r</think>B</answer>",  # never opened
        "<think>r</think><answer>B</answer><answer>B</answer>",  # several answer blocks
        "<think>r</think><answer>A</answer><answer>B</answer>",
        "<think>r</think><Answer>B</Answer>",
    ],
)
def test_accuracy_missing_unclosed_or_repeated_tag(form, text):
    assert acc(form, text, wrap=False) == 0.0


@pytest.mark.parametrize(
    "content", ["", "   ", "The answer is B", "I think B", "Probably B?", "B?", "**B**", "none of the above", "BB"]
)
def test_accuracy_anything_else(form, content):
    assert acc(form, content) == 0.0


# "A" is an English word.
def test_accuracy_article_a_is_not_letter_a(form):
    assert acc(form, "A lesion is seen in the labrum", answer="A") == 0.0
    assert acc(form, "A) lesion", answer="A") == 0.5
    assert acc(form, "A. A lesion is seen", answer="A") == 0.5
    assert acc(form, "Abnormal", answer="A") == 0.0


def test_accuracy_article_in_extra_text_is_not_another_letter(form):
    assert acc(form, "B. A lesion is seen in the labrum") == 0.5
    assert acc(form, "B, I am confident") == 0.5


def test_accuracy_letters_inside_the_correct_option_text_are_not_hedging(form):
    options = ["Type A fracture", "Type C fracture", "No fracture"]
    assert acc(form, "B: Type C fracture", options=options) == 0.5
    assert acc(form, "B: Type C fracture, or C", options=options) == 0.0


def test_accuracy_letter_with_another_options_text(form):
    assert acc(form, "B) Fracture") == 0.0
    assert acc(form, "B: Labral pathology") == 0.5


# "Options come from the row (2-6); `answer` is the letter"
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_accuracy_last_letter_of_each_option_count(form, n):
    options = [f"option {i}" for i in range(n)]
    last = "ABCDEF"[n - 1]
    assert acc(form, last, answer=last, options=options) == 1.0
    assert acc(form, f"option {n - 1}", answer=last, options=options) == 0.5


def test_accuracy_answer_not_among_the_options_is_zero(form):
    assert acc(form, "C", answer="C", options=["Yes", "No"]) == 0.0
    assert acc(form, "B", answer="BB") == 0.0
    assert acc(form, "B", answer="") == 0.0
    assert acc(form, "B", answer=None) == 0.0


@pytest.mark.parametrize("options", [None, "AB", ["only one"], [], {"A": "x"}, 3])
def test_accuracy_malformed_options_are_zero(form, options):
    assert acc(form, "B", options=options) == 0.0


def test_accuracy_options_may_be_tuples(form):
    assert acc(form, "B", options=("Normal", "Labral pathology")) == 1.0


def test_accuracy_columns_are_per_completion():
    completions = ["<answer>A</answer>", "<answer>B</answer>", "<answer>Yes</answer>"]
    out = accuracy_reward(completions, answer=["A", "A", "A"], options=[["x", "y"], ["x", "y"], ["Yes", "No"]])
    assert out == [1.0, 0.0, 0.5]


def test_accuracy_ignores_extra_trl_kwargs():
    out = accuracy_reward(
        ["<answer>B</answer>"],
        answer=["B"],
        options=[FIG1_OPTIONS],
        prompts=[[{"role": "user", "content": "q"}]],
        completion_ids=[[1, 2]],
        modality=["MRI"],
        trainer_state=None,
        log_extra=None,
        log_metric=None,
    )
    assert out == [1.0]


def test_accuracy_column_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="one `answer` value per completion"):
        accuracy_reward(["<answer>B</answer>"] * 2, answer=["B"], options=[FIG1_OPTIONS] * 2)


def test_accuracy_needs_its_columns():
    # A dataset without the column: TRL passes the columns it has, so the error names the missing one and those.
    with pytest.raises(
        ValueError, match=r"accuracy_reward needs the dataset's `options` column.*answer_text, modality"
    ):
        accuracy_reward(["<answer>B</answer>"], answer=["B"], modality=["MRI"], answer_text=["Labral pathology"])
    with pytest.raises(ValueError, match=r"`answer` column.*: none$"):
        accuracy_reward(["<answer>B</answer>"])
