"""The RL-MedVQA study's length rewards: ECR grows with the reasoning's length, capped; CWR is ECR only when the answer
is exactly right. Formula (ours, the paper gives none): weight * min(n_think / target_length, 1)."""

import pickle
from pathlib import Path

import pytest
from helpers import as_message

from medvlm_trl.loading import ModelLoadError
from medvlm_trl.rewards import (
    accuracy_reward,
    cwr_length_reward,
    ecr_length_reward,
    make_cwr_length_reward,
    make_ecr_length_reward,
    think_length,
)
from medvlm_trl.rewards.length import DEFAULT_TARGET_LENGTH, DEFAULT_WEIGHT

OPTIONS = ["Normal", "Labral pathology"]


def completion(n_words, answer="B"):
    return "<think>" + " ".join(["word"] * n_words) + f"</think><answer>{answer}</answer>"


# "grows with the number of tokens (or words) inside <think>"
def test_ecr_grows_with_think_length():
    values = ecr_length_reward([completion(n) for n in (0, 1, 10, 50, 100, 199)])
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert values[0] == 0.0


def test_ecr_formula_with_defaults():
    assert (DEFAULT_WEIGHT, DEFAULT_TARGET_LENGTH) == (1.0, 200)
    assert ecr_length_reward([completion(50)]) == [pytest.approx(0.25)]
    assert ecr_length_reward([as_message(completion(100))]) == [pytest.approx(0.5)]


# "capped"
def test_ecr_is_capped():
    assert ecr_length_reward([completion(200), completion(201), completion(5000)]) == [1.0, 1.0, 1.0]


# "weight and target length are parameters"
def test_ecr_weight_and_target_length():
    ecr = make_ecr_length_reward(weight=0.5, target_length=10)
    assert ecr([completion(5), completion(10), completion(30)]) == [0.25, 0.5, 0.5]
    assert make_ecr_length_reward(weight=-1.0, target_length=4)([completion(2)]) == [-0.5]


def test_ecr_counts_only_the_single_think_block():
    outside = "<think>a b</think><answer>B</answer>" + " extra" * 100
    assert make_ecr_length_reward(target_length=10)([outside]) == [0.2]
    assert ecr_length_reward(["word " * 300, "<think>a b<think>c</think><answer>B</answer>", None]) == [0.0, 0.0, 0.0]


def test_ecr_counts_words_by_whitespace():
    assert think_length("<think>Left\nlower\tlobe   consolidation.</think>") == 4
    assert think_length("<think>   </think>") == 0


class CharTokenizer:
    """One token per character; records how it was called."""

    def __init__(self):
        self.calls = []

    def encode(self, text, add_special_tokens=True):
        self.calls.append(add_special_tokens)
        return list(text) + (["<s>"] if add_special_tokens else [])


def test_ecr_counts_tokens_with_a_tokenizer():
    tok = CharTokenizer()
    ecr = make_ecr_length_reward(target_length=10, tokenizer=tok)
    assert ecr(["<think>abcde</think>"]) == [0.5]
    assert tok.calls == [False]  # no special tokens counted
    assert think_length("<think>abc</think>", tokenizer=tok) == 3


def test_ecr_with_a_real_tokenizer(tiny_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    think = "The labrum shows an abnormal signal consistent with a tear."
    n = len(tok.encode(think, add_special_tokens=False))
    assert n != len(think.split())
    ecr = make_ecr_length_reward(target_length=1000, tokenizer=tiny_lm)  # a path, loaded on first use
    assert ecr([f"<think>{think}</think>"]) == [pytest.approx(n / 1000)]


def test_ecr_tokenizer_failure_gives_zero_not_an_error():
    class Broken:
        def encode(self, text, add_special_tokens=False):
            raise RuntimeError("cannot encode")

    assert make_ecr_length_reward(tokenizer=Broken())(["<think>a</think>"]) == [0.0]


def test_ecr_tokenizer_given_as_a_path_object(tiny_lm):
    from transformers import AutoTokenizer

    think = "The labrum shows an abnormal signal consistent with a tear."
    n = len(AutoTokenizer.from_pretrained(tiny_lm).encode(think, add_special_tokens=False))
    ecr = make_ecr_length_reward(target_length=1000, tokenizer=Path(tiny_lm))
    assert ecr([f"<think>{think}</think>"]) == [pytest.approx(n / 1000)]


def test_a_tokenizer_that_cannot_be_loaded_or_used_is_an_error_not_a_zero_reward(tmp_path):
    # A wrong `length_tokenizer` is a configuration error: it must not train silently on a length reward of 0.
    ecr = make_ecr_length_reward(tokenizer=str(tmp_path / "no-tokenizer-here"))
    with pytest.raises(ModelLoadError, match="cannot load the tokenizer that counts think tokens from .*no-tokenizer"):
        ecr(["<think>a b c</think>"])
    cwr = make_cwr_length_reward(tokenizer=str(tmp_path / "no-tokenizer-here"))
    with pytest.raises(ModelLoadError):
        cwr(["<think>a b c</think><answer>B</answer>"], answer=["B"], options=[OPTIONS])
    with pytest.raises(ValueError, match="tokenizer"):
        make_ecr_length_reward(tokenizer=42)


@pytest.mark.parametrize(
    "kwargs", [{"target_length": 0}, {"target_length": 2.5}, {"weight": float("nan")}, {"weight": "1"}]
)
def test_ecr_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        make_ecr_length_reward(**kwargs)
    with pytest.raises(ValueError):
        make_cwr_length_reward(**kwargs)


def test_names_for_trl_logging():
    assert ecr_length_reward.__name__ == "ecr_length_reward"
    assert cwr_length_reward.__name__ == "cwr_length_reward"
    assert make_ecr_length_reward().__name__ == "ecr_length_reward"
    assert make_cwr_length_reward().__name__ == "cwr_length_reward"
    assert make_ecr_length_reward(name="ecr_long").__name__ == "ecr_long"
    assert "min(n_think / 7, 1)" in make_ecr_length_reward(target_length=7).__doc__


def test_default_instances_are_plain_picklable_functions():
    for fn in (ecr_length_reward, cwr_length_reward):
        assert type(fn).__name__ == "function"
        assert pickle.loads(pickle.dumps(fn)) is fn


# CWR: "the ECR value when accuracy_reward would give 1.0, else 0.0"
def test_cwr_is_ecr_when_exactly_right():
    c = completion(100, "B")
    assert cwr_length_reward([c], answer=["B"], options=[OPTIONS]) == ecr_length_reward([c]) == [0.5]


@pytest.mark.parametrize("answer_text", ["A", "B, because", "Labral pathology", "A or B", ""])
def test_cwr_is_zero_unless_accuracy_is_one(answer_text):
    c = completion(100, answer_text)
    assert accuracy_reward([c], answer=["B"], options=[OPTIONS]) != [1.0]
    assert ecr_length_reward([c]) == [0.5]
    assert cwr_length_reward([c], answer=["B"], options=[OPTIONS]) == [0.0]


def test_cwr_parameters_and_conversational_form():
    cwr = make_cwr_length_reward(weight=2.0, target_length=10)
    out = cwr([as_message(completion(5)), completion(5, "A")], answer=["B", "B"], options=[OPTIONS, OPTIONS])
    assert out == [1.0, 0.0]


def test_cwr_needs_its_columns():
    with pytest.raises(ValueError, match=r"cwr_length_reward needs the dataset's `answer` column.*: options"):
        cwr_length_reward([completion(3)], options=[OPTIONS])
    with pytest.raises(ValueError, match=r"^cwr_fast needs the dataset's `options` column"):
        make_cwr_length_reward(name="cwr_fast")([completion(3)], answer=["B"])
    with pytest.raises(ValueError, match="options"):
        cwr_length_reward([completion(3)] * 2, answer=["B", "B"], options=[OPTIONS])
