"""Property tests for the classes of answers the accuracy reward once scored wrong (issue: false zeros and paid
hedges), over generated options and explanations: capital letters inside prose, option texts that are runs of
capitals, full-width separators, hedges that name another option, and stray extra closing tags. Each property is the
rule of `medvlm_trl/rewards/accuracy.py`'s module docstring; the reward never raises and stays in {0, 0.5, 1}."""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medvlm_trl.eval.scoring import score_strict
from medvlm_trl.rewards import accuracy_reward, parse_completion, score_answer

CHECK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Option texts and explanation words come from disjoint vocabularies, so an explanation never repeats an option.
OPTION_WORDS = ["Cartilage", "degeneration", "Labral", "pathology", "Bone", "fracture", "Tendonitis", "Effusion",
                "Meniscal", "tear", "Osteoarthritis", "Synovitis", "Edema", "Cyst"]  # fmt: skip
PROSE_WORDS = ["consistent", "with", "the", "signal", "seen", "on", "imaging", "marked", "diffuse", "focal",
               "lesion", "in", "region", "deficiency", "tear", "pattern", "suggests", "findings", "typical", "of"]  # fmt: skip
# Nouns that name things with a capital letter in medical prose: vitamin D, hepatitis C, grade C, zone A, type B ...
PROSE_NOUNS = ["vitamin", "hepatitis", "grade", "zone", "type", "class", "group", "stage", "factor", "lead",
               "segment", "complement", "Vitamin", "Hepatitis", "Zone"]  # fmt: skip
CONNECTORS = ["or", "and", "not", "vs", "versus", "nor", "maybe", "or maybe", "or possibly", "option", "also"]
HEDGES = ["or", "or possibly", "otherwise", "alternatively", "maybe", "perhaps", "versus", "vs", "nor", "or else"]
ASCII_SEPARATORS = [",", ":", ".", ")", ";", " -", ""]
FULL_WIDTH = {"，": ",", "：": ":", "；": ";", "）": ")", "．": ".", "。": ".", "、": ","}


def reward(content, answer, options):
    """accuracy_reward on a well-formed completion whose answer block holds `content`."""
    completion = f"<think>reasoning</think><answer>{content}</answer>"
    return accuracy_reward([completion], answer=[answer], options=[options])[0]


@st.composite
def option_rows(draw, min_options=2):
    """Distinct option texts of one or two words, and the correct letter."""
    n = draw(st.integers(min_options, 6))
    phrases = st.lists(st.sampled_from(OPTION_WORDS), min_size=1, max_size=2, unique=True).map(" ".join)
    options = draw(st.lists(phrases, min_size=n, max_size=n, unique_by=lambda s: s.casefold()))
    # No option may be a word of another ("Bone" and "Bone fracture"): the hedge checks below must be unambiguous.
    texts = [o.casefold() for o in options]
    if any(a != b and a in b.split() for a in texts for b in texts):
        options = [f"{o} {i}" for i, o in enumerate(options)]
    answer = draw(st.sampled_from(string.ascii_uppercase[:n]))
    return options, answer


words = st.lists(st.sampled_from(PROSE_WORDS), min_size=0, max_size=5).map(" ".join)


# ---------------------------------------------------------------------------------------------------------------------
# 1. A capital letter used as a word in the explanation is not a second choice.
# ---------------------------------------------------------------------------------------------------------------------
@CHECK
@given(option_rows(), st.sampled_from(ASCII_SEPARATORS), words, st.sampled_from(PROSE_NOUNS), st.data())
def test_capital_letter_inside_prose_keeps_the_half_reward(row, sep, before, noun, data):
    options, answer = row
    letter = data.draw(st.sampled_from(string.ascii_uppercase[: len(options)]), label="letter in prose")
    after = data.draw(words, label="after")
    if answer in "AI" and not sep:
        sep = ","  # a leading "A vitamin ..." is the article (the rule's English-word reading), not the letter
    content = f"{answer}{sep} {before} {noun} {letter} {after}".rstrip()
    assert reward(content, answer, options) == 0.5


@CHECK
@given(option_rows(), st.sampled_from(ASCII_SEPARATORS), st.sampled_from(CONNECTORS), st.data())
def test_another_letter_after_a_connector_or_punctuation_is_a_second_choice(row, sep, connector, data):
    options, answer = row
    others = [c for c in string.ascii_uppercase[: len(options)] if c != answer]
    other = data.draw(st.sampled_from(others), label="other letter")
    other = data.draw(st.sampled_from([other, other.lower()]), label="case")
    tail = data.draw(st.sampled_from(["", ".", ")", "?"]), label="tail")
    assert reward(f"{answer}{sep} {connector} {other}{tail}", answer, options) == 0.0
    # A capital after punctuation or at the start of the extra text is a choice too: "B, C", "B (C)".
    upper = other.upper()
    assert reward(f"{answer}, {upper}", answer, options) == 0.0
    assert reward(f"{answer} ({upper})", answer, options) == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# 2. An option text that is itself a run of capitals is read as that text.
# ---------------------------------------------------------------------------------------------------------------------
capital_runs = st.text(alphabet=string.ascii_uppercase, min_size=2, max_size=4)


@CHECK
@given(st.lists(capital_runs, min_size=2, max_size=6, unique=True), st.data())
def test_option_text_made_of_capitals(options, data):
    index = data.draw(st.integers(0, len(options) - 1), label="correct")
    answer = string.ascii_uppercase[index]
    spelling = data.draw(st.sampled_from([str, str.lower, lambda s: s + ".", lambda s: f" {s} "]), label="spelling")
    assert reward(spelling(options[index]), answer, options) == 0.5
    wrong = data.draw(st.integers(0, len(options) - 1).filter(lambda i: i != index), label="wrong")
    assert reward(options[wrong], answer, options) == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# 3. Full-width punctuation after the letter is a separator, as its ASCII form is.
# ---------------------------------------------------------------------------------------------------------------------
@CHECK
@given(option_rows(), st.sampled_from(sorted(FULL_WIDTH)), words, st.sampled_from(["盂唇病变", "", "labral tear"]))
def test_full_width_separator_reads_as_its_ascii_form(row, full_width, explanation, cjk):
    options, answer = row
    extra = f"{cjk}{explanation}"
    wide = reward(f"{answer}{full_width}{extra}", answer, options)
    assert wide == reward(f"{answer}{FULL_WIDTH[full_width]}{extra}", answer, options) == 0.5
    assert reward(f"{answer}{full_width}{options[(string.ascii_uppercase.index(answer) + 1) % len(options)]}",
                  answer, options) == 0.0  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# 4. Hedges that name another option by its text do not pay.
# ---------------------------------------------------------------------------------------------------------------------
@CHECK
@given(option_rows(), st.sampled_from(ASCII_SEPARATORS), st.sampled_from(HEDGES), st.booleans(), st.data())
def test_hedge_naming_another_options_text(row, sep, hedge, own_first, data):
    options, answer = row
    index = string.ascii_uppercase.index(answer)
    other = data.draw(st.sampled_from([o for i, o in enumerate(options) if i != index]), label="other text")
    other = data.draw(st.sampled_from([other, other.lower(), other.upper()]), label="case")
    own = options[index]
    if answer in "AI" and not sep:
        sep = ":"  # a leading "A Cartilage ..." is the article (the rule's English-word reading), not the letter
    assert reward(f"{answer}{sep} {hedge} {other}", answer, options) == 0.0
    middle = f"{own} {hedge} {other}" if own_first else f"{other} {hedge} {own}"
    assert reward(f"{answer}{sep} {middle}", answer, options) == 0.0
    # The same answer without the hedge commits to one option and keeps the half reward.
    assert reward(f"{answer}{sep} {own}", answer, options) == 0.5


# ---------------------------------------------------------------------------------------------------------------------
# 5. A stray extra closing tag means the block is not read; score_strict agrees with the reward.
# ---------------------------------------------------------------------------------------------------------------------
@CHECK
@given(
    st.sampled_from(["</think>", "</answer>"]),
    st.sampled_from(["B", "A", "B: Labral pathology", " B "]),
    st.integers(0, 10_000),
    st.text(alphabet="ab \n", max_size=20),
)
def test_stray_closing_tag(extra_tag, content, where, think):
    base = f"<think>{think}</think><answer>{content}</answer>"
    inside_a_tag = {
        i for tag in ("<think>", "</think>", "<answer>", "</answer>") for s in [base.find(tag)] for i in
        range(s + 1, s + len(tag))
    }  # fmt: skip
    positions = [i for i in range(len(base) + 1) if i not in inside_a_tag]
    position = positions[where % len(positions)]
    completion = base[:position] + extra_tag + base[position:]
    parsed = parse_completion(completion)
    options = ["Normal", "Labral pathology"]
    acc = accuracy_reward([completion], answer=["B"], options=[options])[0]
    if extra_tag == "</answer>":
        assert parsed.answer is None
        assert acc == 0.0
    else:
        assert parsed.think is None
    assert not parsed.format_ok
    assert score_strict(completion, "B") == (1.0 if acc == 1.0 else 0.0)


# ---------------------------------------------------------------------------------------------------------------------
# Never raises, stays in {0, 0.5, 1}, and agrees with score_strict on the full reward.
# ---------------------------------------------------------------------------------------------------------------------
pieces = st.sampled_from(
    [
        "B",
        "A",
        "C",
        "b",
        "c",
        "or",
        "not",
        ",",
        "，",
        ":",
        "：",
        ")",
        "）",
        " ",
        "-",
        "vitamin",
        "D",
        "AB",
        "CD",
        "Labral pathology",
        "Bone fracture",
        "\u200b",
        "<answer>",
        "</answer>",
        "</think>",
        "'",
        "(",
        "。",
    ]  # fmt: skip
)
contents = st.one_of(st.lists(pieces, max_size=12).map("".join), st.text(max_size=30))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contents, option_rows())
def test_reward_never_raises_and_stays_in_range(content, row):
    options, answer = row
    completion = f"<think>r</think><answer>{content}</answer>"
    value = accuracy_reward([completion], answer=[answer], options=[options])[0]
    assert value in (0.0, 0.5, 1.0)
    assert score_answer(parse_completion(completion).answer, answer, options) == value
    assert score_strict(completion, answer) == (1.0 if value == 1.0 else 0.0)


# The issue's own examples, one per class (MedVLM-R1 Fig. 1's options, plus two rows whose options are capitals).
FIG1 = ["Cartilage degeneration", "Labral pathology", "Bone fracture", "Tendonitis"]


def test_the_reported_examples():
    for content in ["B, consistent with vitamin D deficiency", "B, as in hepatitis C", "B, with a grade C tear",
                    "B, zone A of the labrum", "B，盂唇病变", "B：盂唇病变"]:  # fmt: skip
        assert reward(content, "B", FIG1) == 0.5, content
    for content in ["B or c", "B, c", "B, c.", "B or Bone fracture", "B: Labral pathology or Tendonitis",
                    "B, otherwise Cartilage degeneration"]:  # fmt: skip
        assert reward(content, "B", FIG1) == 0.0, content
    crohn = ["Ulcerative colitis", "Irritable bowel", "UC", "CD"]  # option D is Crohn's disease as "CD"
    assert [reward(c, "D", crohn) for c in ["CD", "cd", "CD.", "UC"]] == [0.5, 0.5, 0.5, 0.0]
    blood = ["A", "B", "AB", "O"]
    assert [reward(c, "C", blood) for c in ["AB", "C", "A"]] == [0.5, 1.0, 0.0]
    completion = "<think>r</think><answer>B</answer></answer>"
    assert accuracy_reward([completion], answer=["B"], options=[FIG1]) == [0.0]
    assert score_strict(completion, "B") == 0.0
