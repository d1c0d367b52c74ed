"""The RL-MedVQA study's length rewards (Zhu et al., "Toward Effective Reinforcement Learning Fine-Tuning for Medical
VQA in Vision-Language Models", arXiv:2505.13973, section 3.3): the Extended Chain Reward (ECR) and the
Correctness-Weighted Length Reward (CWR).

The study gives no formula, so this library fixes a bounded one. With `n` the length of the reasoning (the text of the
single `<think>` block, see [`parse_completion`]; 0 when there is none):

    ECR(y) = weight * min(n / target_length, 1)
    CWR(y) = ECR(y) if accuracy_reward(y) == 1.0 else 0

`n` counts whitespace-separated words by default, or tokens of `tokenizer` when one is given. The cap keeps the reward
in [0, weight] (for weight >= 0) so that a long chain cannot outweigh a correct answer without limit; `weight` and
`target_length` are parameters of [`make_ecr_length_reward`] and [`make_cwr_length_reward`], and the module-level
`ecr_length_reward` and `cwr_length_reward` use the defaults below (`weight=1.0`, `target_length=200` words).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from .accuracy import _answer_columns, score_answer
from .parsing import parse_completion

__all__ = [
    "DEFAULT_TARGET_LENGTH",
    "DEFAULT_WEIGHT",
    "cwr_length_reward",
    "ecr_length_reward",
    "make_cwr_length_reward",
    "make_ecr_length_reward",
    "think_length",
]

DEFAULT_WEIGHT = 1.0
DEFAULT_TARGET_LENGTH = 200

RewardFunc = Callable[..., list[float]]


def _counter(tokenizer: Any) -> Callable[[str], int]:
    """A function giving the length of a text: words, or tokens of `tokenizer` (an object with a Hugging Face style
    `encode`, a callable returning a sequence, or a model id / path loaded lazily with `AutoTokenizer`).

    A tokenizer that cannot be loaded raises (a configuration error must not train on a length reward of 0); one
    that fails on a particular text counts it as 0 tokens (a completion must never crash a reward)."""
    if tokenizer is None:
        return lambda text: len(text.split())
    if not isinstance(tokenizer, (str, os.PathLike)) and not hasattr(tokenizer, "encode") and not callable(tokenizer):
        raise ValueError(f"tokenizer must be a model id or path, or have `encode`, got {type(tokenizer).__name__}")
    loaded: list[Any] = []

    def count_tokens(text: str) -> int:
        if not loaded:
            tok = tokenizer
            if isinstance(tok, (str, os.PathLike)):
                from transformers import AutoTokenizer

                from medvlm_trl.loading import load_pretrained

                tok = load_pretrained(AutoTokenizer.from_pretrained, tok, "tokenizer that counts think tokens")
            loaded.append(tok)
        tok = loaded[0]
        try:
            if hasattr(tok, "encode"):
                try:
                    return len(tok.encode(text, add_special_tokens=False))
                except TypeError:
                    return len(tok.encode(text))
            return len(tok(text))
        except Exception:  # a tokenizer that cannot encode this text: no length reward rather than a crash
            return 0

    return count_tokens


def think_length(completion: Any, tokenizer: Any = None) -> int:
    """Length of the completion's reasoning in words (or in tokens of `tokenizer`); 0 without a single think block.

    Example:
    ```python
    >>> think_length("<think>Left lower lobe consolidation.</think><answer>A</answer>")
    4
    ```
    """
    think = parse_completion(completion).think
    return _counter(tokenizer)(think) if think else 0


def _check(weight: float, target_length: int) -> None:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ValueError(f"weight must be a finite number, got {weight!r}")
    if isinstance(target_length, bool) or not isinstance(target_length, int) or target_length < 1:
        raise ValueError(f"target_length must be a positive integer, got {target_length!r}")


def _ecr_value(think: str | None, weight: float, target_length: int, count: Callable[[str], int]) -> float:
    if not think:
        return 0.0
    return weight * min(count(think) / target_length, 1.0)


def _ecr_scores(completions: list, weight: float, target_length: int, count: Callable[[str], int]) -> list[float]:
    return [_ecr_value(parse_completion(c).think, weight, target_length, count) for c in completions]


def _cwr_scores(completions, answer, options, weight, target_length, count, name, kwargs) -> list[float]:
    answer, options = _answer_columns(name, len(completions), answer, options, kwargs)
    scores = []
    for completion, letter, opts in zip(completions, answer, options):
        parsed = parse_completion(completion)
        if score_answer(parsed.answer, letter, opts) == 1.0:
            scores.append(_ecr_value(parsed.think, weight, target_length, count))
        else:
            scores.append(0.0)
    return scores


def make_ecr_length_reward(
    weight: float = DEFAULT_WEIGHT,
    target_length: int = DEFAULT_TARGET_LENGTH,
    tokenizer: Any = None,
    name: str = "ecr_length_reward",
) -> RewardFunc:
    """Build an Extended Chain Reward, `weight * min(n_think / target_length, 1)`, as a plain function named `name`
    (TRL logs each reward under its function's `__name__`).

    Args:
        weight: the reward of a chain at least `target_length` long.
        target_length: the length (words, or tokens with `tokenizer`) at which the reward saturates.
        tokenizer: count tokens of this tokenizer instead of words (an object with `encode`, or a model id/path that
            is loaded on first use).
        name: the function's `__name__`.

    Example:
    ```python
    >>> ecr = make_ecr_length_reward(weight=0.5, target_length=4)
    >>> ecr(["<think>a b</think><answer>A</answer>", "<think>a b c d e f</think>", "no tags"])
    [0.25, 0.5, 0.0]
    ```
    """
    _check(weight, target_length)
    count = _counter(tokenizer)

    def ecr(completions: list, **kwargs) -> list[float]:
        return _ecr_scores(completions, weight, target_length, count)

    ecr.__name__ = ecr.__qualname__ = name
    ecr.__doc__ = f"Extended Chain Reward: {weight} * min(n_think / {target_length}, 1), n in {_unit(tokenizer)}."
    return ecr


def make_cwr_length_reward(
    weight: float = DEFAULT_WEIGHT,
    target_length: int = DEFAULT_TARGET_LENGTH,
    tokenizer: Any = None,
    name: str = "cwr_length_reward",
) -> RewardFunc:
    """Build a Correctness-Weighted Length Reward: the ECR value (same parameters as [`make_ecr_length_reward`]) when
    `accuracy_reward` would give 1.0, else 0.0. The returned function needs the `answer` and `options` columns.

    Example:
    ```python
    >>> cwr = make_cwr_length_reward(target_length=2)
    >>> cwr(["<think>a b c</think><answer>B</answer>"] * 2, answer=["B", "A"], options=[["x", "y"]] * 2)
    [1.0, 0.0]
    ```
    """
    _check(weight, target_length)
    count = _counter(tokenizer)

    def cwr(
        completions: list, answer: list[str] | None = None, options: list[list[str]] | None = None, **kwargs
    ) -> list[float]:
        return _cwr_scores(completions, answer, options, weight, target_length, count, name, kwargs)

    cwr.__name__ = cwr.__qualname__ = name
    cwr.__doc__ = (
        f"Correctness-Weighted Length Reward: {weight} * min(n_think / {target_length}, 1) when the answer is exactly "
        f"the correct letter, else 0; n in {_unit(tokenizer)}."
    )
    return cwr


def _unit(tokenizer: Any) -> str:
    return "words" if tokenizer is None else "tokens"


_count_words = _counter(None)


def ecr_length_reward(completions: list, **kwargs) -> list[float]:
    r"""Extended Chain Reward (RL-MedVQA study, section 3.3) with the default parameters:
    `1.0 * min(n_think_words / 200, 1)`, where `n_think_words` is the number of whitespace-separated words in the
    single `<think>` block (0 without one). Build other weights, targets or a token count with
    [`make_ecr_length_reward`].

    Example:
    ```python
    >>> ecr_length_reward(["<think>" + "word " * 50 + "</think><answer>B</answer>", "<answer>B</answer>"])
    [0.25, 0.0]
    ```
    """
    return _ecr_scores(completions, DEFAULT_WEIGHT, DEFAULT_TARGET_LENGTH, _count_words)


def cwr_length_reward(
    completions: list, answer: list[str] | None = None, options: list[list[str]] | None = None, **kwargs
) -> list[float]:
    r"""Correctness-Weighted Length Reward (RL-MedVQA study, section 3.3) with the default parameters: the value of
    [`ecr_length_reward`] when [`accuracy_reward`] would give 1.0 (the answer block holds exactly the correct letter),
    else 0.0. Build other parameters with [`make_cwr_length_reward`].

    Example:
    ```python
    >>> completion = "<think>" + "word " * 400 + "</think><answer>B</answer>"
    >>> cwr_length_reward([completion, completion], answer=["B", "A"], options=[["Normal", "Labral pathology"]] * 2)
    [1.0, 0.0]
    ```
    """
    return _cwr_scores(
        completions, answer, options, DEFAULT_WEIGHT, DEFAULT_TARGET_LENGTH, _count_words, "cwr_length_reward", kwargs
    )
