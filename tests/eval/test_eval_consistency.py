"""The per-row consistency audit: reasoning that concludes for another option, empty or superficial reasoning."""

import pytest

from medvlm_trl.eval.consistency import answer_letter, audit_completion, consistency_rates, think_conclusion
from medvlm_trl.rewards import score_answer

OPTIONS = ["Hemorrhage", "Acute infarct", "Abscess formation", "Chronic infarct"]


@pytest.mark.parametrize(
    "think, expected",
    [
        ("Dark signal in the territory. The answer is D.", "D"),
        ("Could be A, but the gliosis points to option D", "D"),  # the last explicit reference wins
        ("Hyperintense rim ... so (C).", "C"),
        ("Between B) and D) the volume loss favours D) here.", "D"),
        ("Answer: B", "B"),
        ("Option C fits; the rim is thin (in segment B).", "C"),  # "B)" closing an aside is no reference
        ("The lesion (see segment A) favours D) here.", "D"),  # an aside closed, a bare "D)" after it still counts
        ("Enhancing rim (B) and (segment A) here", "B"),
        ("There is volume loss and gliosis, typical of a chronic infarct.", "D"),  # the last sentence names one option
        ("A hemorrhage would be bright. This is an acute infarct.", "B"),  # "acute infarct" is not also "infarct"
        ("This is not a hemorrhage.", None),  # a negated option is no conclusion
        ("It is either an acute infarct or a chronic infarct.", None),  # two options in the concluding sentence
        ("A lesion is seen in the left hemisphere.", None),  # the article "A" is not a letter
        ("The CT shows something.", None),
        ("", None),
        (None, None),
    ],
)
def test_think_conclusion(think, expected):
    assert think_conclusion(think, OPTIONS) == expected


def test_think_conclusion_ignores_letters_beyond_the_options():
    assert think_conclusion("So the answer is E.", ["yes", "no"]) is None


@pytest.mark.parametrize(
    "text, expected",
    [("D", "D"), ("D: Chronic infarct", "D"), ("(B)", "B"), ("chronic infarct.", "D"), ("maybe", None), (None, None)],
)
def test_answer_letter(text, expected):
    assert answer_letter(text, OPTIONS) == expected


@pytest.mark.parametrize(
    "text",
    ["A lesion in the cortex", "I think D", "A or B", "B, not A", "B) Hemorrhage", "B/C", "b", "**B**"],
)
def test_answer_letter_reads_the_answer_as_the_accuracy_reward_does(text):
    # An English "A", a hedge between letters, or a letter beside another option's text names no option: the
    # audit must not count such an answer as a clear choice (the accuracy reward pays no letter for any of them).
    assert answer_letter(text, OPTIONS) is None
    assert all(score_answer(text, letter, OPTIONS) == 0.0 for letter in "ABCD")
    think_says_b = audit_completion(f"<think>The answer is B.</think><answer>{text}</answer>", OPTIONS)
    assert think_says_b["mismatch"] is False


def test_audit_flags_a_mismatch_between_think_and_answer():
    audit = audit_completion(
        "<think>Volume loss and gliosis: the answer is D, a chronic infarct in this region.</think><answer>B</answer>",
        OPTIONS,
        min_think_words=5,
    )
    assert (audit["think_letter"], audit["answer_letter"], audit["mismatch"]) == ("D", "B", True)
    assert not audit["empty_think"] and not audit["superficial_think"]


def test_audit_agreeing_or_unreadable_reasoning_is_no_mismatch():
    agree = audit_completion("<think>The answer is D.</think><answer>D</answer>", OPTIONS)
    unread = audit_completion("<think>Signal change in the cortex.</think><answer>B</answer>", OPTIONS)
    assert not agree["mismatch"] and not unread["mismatch"] and unread["think_letter"] is None


@pytest.mark.parametrize(
    "completion, empty, superficial, words",
    [
        ("<answer>B</answer>", True, False, 0),  # no think block
        ("<think>  </think><answer>B</answer>", True, False, 0),  # empty block
        ("<think>Infarct.</think><answer>B</answer>", False, True, 1),
        ("<think>one two three four</think><answer>B</answer>", False, True, 4),
        ("<think>one two three four five</think><answer>B</answer>", False, False, 5),
    ],
)
def test_audit_empty_and_superficial_reasoning(completion, empty, superficial, words):
    audit = audit_completion(completion, OPTIONS, min_think_words=5)
    assert (audit["empty_think"], audit["superficial_think"], audit["think_words"]) == (empty, superficial, words)


def test_audit_rejects_a_bad_word_threshold():
    with pytest.raises(ValueError, match="min_think_words"):
        audit_completion("<answer>B</answer>", OPTIONS, min_think_words=0)


def test_consistency_rates_are_percent_of_all_rows():
    audits = [
        audit_completion("<think>the answer is D</think><answer>B</answer>", OPTIONS, 2),  # mismatch
        audit_completion("<think>the answer is D</think><answer>D</answer>", OPTIONS, 2),
        audit_completion("<answer>D</answer>", OPTIONS, 2),  # empty
        audit_completion("<think>gliosis</think><answer>D</answer>", OPTIONS, 2),  # superficial
    ]
    rates = consistency_rates(audits)
    assert rates == {
        "n": 4,
        "mismatch_rate": 25.0,
        "empty_think_rate": 25.0,
        "superficial_think_rate": 25.0,
        "conclusion_found_rate": 50.0,
    }
    assert consistency_rates([]) == {"n": 0}
