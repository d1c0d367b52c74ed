"""The test-time scoring rules of CONTRACT.md ("Evaluation scoring"), one case per sentence, and the random-guess row."""

import json

import pytest
from helpers import AUTHORS_TEST_MANIFEST as MANIFEST
from helpers import needs_authors_manifest

from medvlm_trl.data.huatuo import row_from_record
from medvlm_trl.eval import random_guess_accuracy, score_letter, score_strict, score_study


# score_strict: "1.0 only when the content of the <answer> block, stripped, is exactly the correct letter".
@pytest.mark.parametrize(
    "completion",
    [
        "<think>The labrum is torn.</think><answer>B</answer>",
        "<think>\nTorn labrum.\n</think>\n<answer>\n B \n</answer>",  # stripped
        "<answer>B</answer>",  # the test rule reads the answer block; the format is format_reward's business
        [{"role": "assistant", "content": "<think>t</think><answer>B</answer>"}],  # TRL's conversational form
    ],
)
def test_strict_exact_letter_scores_one(completion):
    assert score_strict(completion, "B") == 1.0


# "... anything else, even if semantically right, 0.0".
@pytest.mark.parametrize(
    "completion",
    [
        "<think>t</think><answer>B, because the labrum is torn</answer>",  # letter plus text
        "<think>t</think><answer>B: Labral pathology</answer>",
        "<think>t</think><answer>Labral pathology</answer>",  # the option's text instead of its letter
        "<think>t</think><answer>b</answer>",  # lower case
        "<think>t</think><answer>(B)</answer>",
        "<think>t</think><answer>A</answer>",  # wrong letter
        "<think>t</think><answer>A or B</answer>",  # several letters
        "<think>t</think><answer>B",  # unclosed tag
        "<think>t</think>B",  # no tag
        "<answer>B</answer><answer>B</answer>",  # two answer blocks: no unique block to read
        "",
    ],
)
def test_strict_anything_else_scores_zero(completion):
    assert score_strict(completion, "B") == 0.0


# score_letter: "a bare single-letter reply", with the tolerance stated in medvlm_trl.eval.scoring.
@pytest.mark.parametrize("completion", ["B", " B\n", "B.", "B)", "(B)", "\n(B) "])
def test_letter_bare_letter_scores_one(completion):
    assert score_letter(completion, "B") == 1.0


@pytest.mark.parametrize(
    "completion",
    ["A", "b", "B) Labral pathology", "The answer is B", "<answer>B</answer>", "**B**", "B..", "B C", "Labral", ""],
)
def test_letter_anything_else_scores_zero(completion):
    assert score_letter(completion, "B") == 0.0


@pytest.mark.parametrize("answer", ["b", "", "AB", None, 1])
def test_scoring_rejects_an_invalid_correct_answer(answer):
    with pytest.raises(ValueError, match="capital option letter"):
        score_strict("<answer>B</answer>", answer)
    with pytest.raises(ValueError, match="capital option letter"):
        score_letter("B", answer)


# Random guess: "the mean of 1/len(options) over the test rows", per modality.
def test_random_guess_on_a_fixture():
    rows = [
        {"id": "1", "modality": "CT", "options": ["a", "b"]},
        {"id": "2", "modality": "CT", "options": ["a", "b", "c", "d"]},
        {"id": "3", "modality": "MRI", "options": ["a", "b", "c", "d", "e"]},
        {"id": "4", "modality": "MRI", "options": ["a", "b", "c"]},
    ]
    assert random_guess_accuracy(rows) == pytest.approx({"CT": 37.5, "MRI": (20 + 100 / 3) / 2})
    assert random_guess_accuracy(rows, by=None) == pytest.approx({"all": (50 + 25 + 20 + 100 / 3) / 4})


def test_random_guess_names_a_bad_row():
    with pytest.raises(ValueError, match="'r7'.*options"):
        random_guess_accuracy([{"id": "r7", "modality": "CT", "options": ["only one"]}])
    with pytest.raises(ValueError, match="'r8'.*'modality'"):
        random_guess_accuracy([{"id": "r8", "options": ["a", "b"]}])


@needs_authors_manifest
def test_random_guess_on_the_medvlm_r1_test_manifest():
    """MedVLM-R1's Table 1 random-guess row, computed from the authors' released test manifest."""
    # The contract rows the data layer makes of the manifest, as `medvlm-trl eval --dataset huatuo` would read them.
    rows = [row_from_record(record, i) for i, record in enumerate(json.loads(MANIFEST.read_text()))]
    assert len(rows) == 900
    guess = random_guess_accuracy(rows)
    assert {m: round(v, 2) for m, v in guess.items()} == {"MRI": 25.00, "CT": 30.25, "X-ray": 26.00}
    assert guess == pytest.approx({"MRI": 25.0, "CT": 30.25, "X-ray": 26.0}, abs=1e-9)


# score_study: the RL-MedVQA study counts "the correct letter or the correct option's text" inside <answer>.
STUDY_OPTIONS = ["Light microscope", "Confocal microscope", "Electron microscope", "X-ray"]


@pytest.mark.parametrize(
    "content",
    ["B", " B ", "B.", "(B)", "B)", "Confocal microscope", "confocal  microscope.", " Confocal microscope ",
     "B:Confocal microscope", "B: Confocal microscope", "B) Confocal microscope", "(B) confocal microscope",
     "\"Confocal microscope\"", "Ｃｏｎｆｏｃａｌ microscope"],
)  # fmt: skip
def test_score_study_counts_the_letter_or_the_option_text(content):
    assert score_study(f"<think>r</think><answer>{content}</answer>", "B", STUDY_OPTIONS) == 1.0
    assert score_strict(f"<think>r</think><answer>{content}</answer>", "B") == (1.0 if content.strip() == "B" else 0.0)


@pytest.mark.parametrize(
    "content",
    ["A", "Light microscope", "A:Confocal microscope", "B or C", "Confocal or Electron microscope", "b", "",
     "B, because it is confocal", "microscope", "B: Electron microscope"],
)  # fmt: skip
def test_score_study_anything_else_is_wrong(content):
    assert score_study(f"<think>r</think><answer>{content}</answer>", "B", STUDY_OPTIONS) == 0.0


def test_score_study_reads_only_a_single_answer_block_and_needs_the_options():
    assert score_study("<answer>B</answer><answer>B</answer>", "B", STUDY_OPTIONS) == 0.0
    assert score_study("Confocal microscope", "B", STUDY_OPTIONS) == 0.0  # no answer block
    with pytest.raises(ValueError, match="needs the row's options"):
        score_study("<answer>B</answer>", "B", None)
    with pytest.raises(ValueError, match="not among the 2 options"):
        score_study("<answer>C</answer>", "C", ["a", "b"])
