"""Property tests: on any completion (tag soup, unicode, huge strings, nested and duplicated tags, conversational or
junk), every reward returns one float per completion within its stated range and never raises. Together the tests
below generate well over 10,000 completions (checked by the last test)."""

import string

import pytest
from helpers import as_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medvlm_trl.rewards import (
    accuracy_reward,
    cwr_length_reward,
    ecr_length_reward,
    format_reward,
    make_ecr_length_reward,
    parse_completion,
    score_answer,
)

SEEN = {"completions": 0}
FAST = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TAGS = ["<think>", "</think>", "<answer>", "</answer>", "<Think>", "<think >", "</ answer>", "<answer/>", "<<<", ">>>"]
BITS = ["A", "B", "C", "F", "(B)", "B.", "B,", "A or B", "a", "I", " ", "\n", "\t", "\u2003", "Answer: Yes", "Yes"]

fragment = st.one_of(st.sampled_from(TAGS), st.sampled_from(BITS), st.text(max_size=12))
tag_soup = st.lists(fragment, max_size=30).map("".join)
whitespace = st.text(alphabet=" \n\t\r\u2003\u00a0", max_size=3)
well_formed = st.builds(
    lambda pre, think, mid, answer, post: f"{pre}<think>{think}</think>{mid}<answer>{answer}</answer>{post}",
    whitespace,
    st.text(max_size=60),
    whitespace,
    st.one_of(st.sampled_from(BITS), st.text(max_size=10)),
    whitespace,
)
huge = st.builds(
    lambda unit, k, wrap: wrap.format(unit * k),
    st.text(min_size=1, max_size=8),
    st.integers(0, 40_000),
    st.sampled_from(["{}", "<think>{}</think><answer>B</answer>", "<answer>{}</answer>", "<think>{}"]),
)
texts = st.one_of(tag_soup, st.text(), well_formed, huge)


def as_parts(text):
    return [{"role": "assistant", "content": [{"type": "text", "text": text}, {"type": "image"}]}]


junk = st.one_of(
    st.none(),
    st.integers(),
    st.binary(max_size=20),
    st.lists(
        st.dictionaries(
            st.sampled_from(["role", "content", "type", "text"]),
            st.one_of(st.none(), st.text(max_size=5), st.integers()),
        ),
        max_size=3,
    ),
)
completions_any = st.one_of(texts, texts.map(as_message), texts.map(as_parts), junk)


@st.composite
def rows(draw):
    """(options, answer): 2-6 options and usually a valid letter, sometimes junk the data layer would reject."""
    options = draw(st.lists(st.text(max_size=15), min_size=2, max_size=6))
    answer = draw(st.one_of(st.sampled_from("ABCDEF"[: len(options)]), st.text(max_size=2), st.none()))
    if draw(st.integers(0, 20)) == 0:
        options = draw(st.one_of(st.none(), st.text(max_size=3), st.lists(st.text(max_size=3), max_size=8)))
    return options, answer


batches = st.lists(st.tuples(completions_any, rows()), min_size=1, max_size=6)


def unpack(batch):
    SEEN["completions"] += len(batch)
    completions = [c for c, _ in batch]
    options = [o for _, (o, _) in batch]
    answers = [a for _, (_, a) in batch]
    return completions, answers, options


def floats(values, n):
    assert isinstance(values, list) and len(values) == n
    assert all(type(v) is float for v in values)
    return values


@FAST
@given(completions_any)
def test_parser_never_raises_and_is_consistent(completion):
    SEEN["completions"] += 1
    parsed = parse_completion(completion)
    for part in (parsed.think, parsed.answer):
        assert part is None or (isinstance(part, str) and part == part.strip())
    if parsed.format_ok:
        assert parsed.think is not None and parsed.answer is not None


@FAST
@given(batches)
def test_every_reward_is_in_range(batch):
    completions, answers, options = unpack(batch)
    n = len(completions)
    fmt = floats(format_reward(completions), n)
    acc = floats(accuracy_reward(completions, answer=answers, options=options), n)
    ecr = floats(ecr_length_reward(completions), n)
    cwr = floats(cwr_length_reward(completions, answer=answers, options=options), n)
    assert set(fmt) <= {0.0, 1.0}
    assert set(acc) <= {0.0, 0.5, 1.0}
    assert all(0.0 <= v <= 1.0 for v in ecr)
    for a, e, c in zip(acc, ecr, cwr):
        assert c == (e if a == 1.0 else 0.0)


@FAST
@given(st.lists(texts, min_size=1, max_size=4))
def test_conversational_form_scores_like_the_string(texts_):
    SEEN["completions"] += 3 * len(texts_)
    answers, options = ["B"] * len(texts_), [["Normal", "Labral pathology", "Fracture"]] * len(texts_)
    for wrap in (as_message, as_parts):
        wrapped = [wrap(t) for t in texts_]
        assert format_reward(wrapped) == format_reward(texts_)
        assert accuracy_reward(wrapped, answer=answers, options=options) == accuracy_reward(
            texts_, answer=answers, options=options
        )
        assert ecr_length_reward(wrapped) == ecr_length_reward(texts_)


tagless = st.text(max_size=80).filter(lambda t: "<think>" not in t and "</think>" not in t and "answer>" not in t)


@FAST
@given(tagless, st.integers(2, 6), st.data())
def test_well_formed_exact_letter_scores_full(think, n_options, data):
    SEEN["completions"] += 1
    letter = data.draw(st.sampled_from("ABCDEF"[:n_options]))
    options = data.draw(st.lists(st.text(max_size=10), min_size=n_options, max_size=n_options))
    completion = f"<think>{think}</think>\n<answer>{letter}</answer>"
    assert format_reward([completion]) == [1.0]
    assert accuracy_reward([completion], answer=[letter], options=[options]) == [1.0]
    wrong = "ABCDEF"[(("ABCDEF".index(letter)) + 1) % n_options]
    assert accuracy_reward([completion], answer=[wrong], options=[options]) == [0.0]


@FAST
@given(tagless, tagless)
def test_ecr_never_decreases_as_the_chain_grows(think, more):
    SEEN["completions"] += 2
    ecr = make_ecr_length_reward(target_length=50)
    short, long = ecr([f"<think>{think}</think>", f"<think>{think} {more}</think>"])
    assert 0.0 <= short <= long <= 1.0


@FAST
@given(st.text(max_size=40), st.sampled_from(string.ascii_uppercase), st.lists(st.text(max_size=10), max_size=8))
def test_score_answer_one_only_for_the_exact_letter(text, answer, options):
    SEEN["completions"] += 1
    score = score_answer(text.strip(), answer, options)
    assert score in (0.0, 0.5, 1.0)
    assert (score == 1.0) == (
        text.strip() == answer and 2 <= len(options) and answer in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(options)]
    )


def test_the_suite_generated_enough_completions():
    if SEEN["completions"] == 0:
        pytest.skip("the property tests above were deselected")
    assert SEEN["completions"] >= 10_000
