"""The one parser: what it reads out of a completion, in every form TRL hands one over."""

import pytest
from helpers import as_message

from medvlm_trl.rewards import Parsed, completion_text, parse_completion

FIG1 = "<think>The MRI shows an abnormal signal in the labrum, consistent with a tear.</think><answer>B</answer>"


def as_str(text):
    return text


def as_parts(text):
    half = len(text) // 2
    return [
        {"role": "assistant", "content": [{"type": "text", "text": text[:half]}, {"type": "text", "text": text[half:]}]}
    ]


FORMS = pytest.mark.parametrize("form", [as_str, as_message, as_parts], ids=["str", "message", "parts"])


@FORMS
def test_fig1_example_is_read(form):
    parsed = parse_completion(form(FIG1))
    assert parsed == Parsed(
        think="The MRI shows an abnormal signal in the labrum, consistent with a tear.", answer="B", format_ok=True
    )


@FORMS
def test_blocks_are_stripped(form):
    parsed = parse_completion(form("\n<think>\n  reasoning here \n</think>\n<answer> C \n</answer>\n"))
    assert parsed.think == "reasoning here"
    assert parsed.answer == "C"
    assert parsed.format_ok


def test_parsed_is_immutable():
    parsed = parse_completion(FIG1)
    with pytest.raises(AttributeError):
        parsed.answer = "A"


@pytest.mark.parametrize(
    "text, think, answer",
    [
        ("<answer>B</answer>", None, "B"),
        ("<think>r</think>", "r", None),
        ("<think>r</think><think>s</think><answer>B</answer>", None, "B"),  # two think blocks: none is read
        ("<think>r</think><answer>A</answer><answer>B</answer>", "r", None),  # two answer blocks: none is read
        ("<think>r</think><answer>B", "r", None),  # unclosed answer
        ("<think>r<answer>B</answer>", None, "B"),  # unclosed think
        ("</answer>B<answer>", None, None),  # closing tag before the opening tag
        ("<think>r</think><answer><answer>B</answer>", "r", None),  # nested/duplicated opening tag
        ("<Think>r</Think><ANSWER>B</ANSWER>", None, None),  # tags are lower case
        ("<think >r</think ><answer >B</answer >", None, None),  # no spaces inside tags
        ("<think></think><answer></answer>", "", ""),
    ],
)
def test_a_block_is_read_only_when_unique_and_closed(text, think, answer):
    parsed = parse_completion(text)
    assert (parsed.think, parsed.answer) == (think, answer)


def test_answer_inside_think_is_read_but_breaks_format():
    parsed = parse_completion("<think>so <answer>B</answer> it is</think>")
    assert parsed.answer == "B"
    assert parsed.format_ok is False


@pytest.mark.parametrize(
    "text, ok",
    [
        ("<think>r</think><answer>B</answer>", True),
        ("  \n<think>r</think> \n\t <answer>B</answer>\n ", True),  # whitespace outside the blocks is allowed
        ("<think>r</think>\u2003<answer>B</answer>", True),  # unicode whitespace too
        ("<think></think><answer></answer>", True),  # the rule does not ask for non-empty blocks
        ("Sure! <think>r</think><answer>B</answer>", False),  # text before <think>
        ("<think>r</think> so <answer>B</answer>", False),  # text between the blocks
        ("<think>r</think><answer>B</answer> done", False),  # text after </answer>
        ("<answer>B</answer><think>r</think>", False),  # answer before think
        ("<think>r</think>", False),
        ("<answer>B</answer>", False),
        ("", False),
    ],
)
def test_format_ok(text, ok):
    assert parse_completion(text).format_ok is ok


@pytest.mark.parametrize(
    "completion",
    [None, 42, 3.5, b"<answer>B</answer>", object(), [], {}, [None], [{"role": "assistant"}], [{"content": None}]],
)
def test_non_text_reads_as_empty(completion):
    assert completion_text(completion) == ""
    assert parse_completion(completion) == Parsed(None, None, False)


def test_completion_text_forms():
    assert completion_text("<answer>B</answer>") == "<answer>B</answer>"
    assert completion_text([{"role": "assistant", "content": "x"}]) == "x"
    assert (
        completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"}]}]) == "a"
    )
    assert completion_text({"role": "assistant", "content": "single message"}) == "single message"
    assert completion_text([{"content": "no role"}]) == "no role"


def test_multi_turn_completion_reads_assistant_turns_only():
    completion = [
        {"role": "assistant", "content": "<think>call a tool</think>"},
        {"role": "tool", "content": "<answer>A</answer>"},
        {"role": "assistant", "content": "<answer>B</answer>"},
    ]
    assert completion_text(completion) == "<think>call a tool</think>\n<answer>B</answer>"
    assert parse_completion(completion).answer == "B"


class HostileMessage(dict):
    def get(self, *args):
        raise RuntimeError("boom")


def test_hostile_objects_do_not_raise():
    assert completion_text([HostileMessage(role="assistant", content="x")]) == ""
