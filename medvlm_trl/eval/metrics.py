"""The RL-MedVQA study's reasoning-quality metrics (Zhu et al., arXiv:2505.13973, appendix B), each with its model
configurable, reported as mean and standard deviation over the test rows as the study reports them.

| metric            | what it measures | default model (the study's) |
|-------------------|------------------|-----------------------------|
| `similarity`      | how close the reasoning is to the reference answer, by a cross-encoder (sentence-transformers `CrossEncoder`) | `cross-encoder/stsb-roberta-base` |
| `perplexity`      | fluency of the reasoning under a medical language model: exp of the mean token negative log-likelihood | `microsoft/biogpt` |
| `thinking_reward` | an instruct LLM judge's 1-10 grade of the reasoning, given the question and the reference answer | `mistralai/Mistral-7B-Instruct-v0.2` |
| `token_length`    | length of the reasoning in tokens of a tokenizer (the evaluated model's), or in words | - |

"The reasoning" is the text of the single `<think>` block, read by the shared parser
[`medvlm_trl.rewards.parse_completion`]; the reference answer is the text of the correct option. Rows without a
non-empty think block are left out of every metric and counted as `missing`. The standard deviation is the population
one (numpy's default, ddof=0); the study does not say which it uses.

The thinking-reward judge, as appendix B describes it: `mistral-7B-instruct` is given the question, the reference
answer and the model's reasoning and asked for a score from 1 to 10 on the quality of the reasoning. Ours gives it
exactly those three, in [`THINKING_JUDGE_TEMPLATE`]. Where the study is silent we chose, and say so: the prompt's
wording (the study prints none), which Mistral-7B-Instruct version (v0.2), whether the options are shown (no: the
study names only the question, the reference answer and the reasoning), greedy decoding, how the number is read and
what an unreadable reply counts as (below), and integer grades.

The reasoning is the policy's text, so it is fenced as the semantic judge's `fenced` prompt fences it (NFKC, zero-width
characters removed, look-alike markers read as markers and removed, see [`medvlm_trl.rewards.fence_reasoning`]), and
it and the question are tokenized with special-token parsing off and spliced between the ids of the chat-templated
fixed parts ([`medvlm_trl.rewards.judge.encode_untrusted`]): a `<|im_end|>` in the reasoning cannot end the judge's
turn. Two ways to read the judge's number:

- `mode="generate"` (default): greedy generation of a few tokens, parsed robustly (`"8"`, `"8/10"`, `"Score: 8"`,
  `"**7.5**"`, `"eight"`), rounded and clamped to 1..10; a reply with no number is counted as `unparseable` and left
  out of the mean.
- `mode="scores"`: no generation; each candidate "1".."10" (with and without a leading space, since tokenizers differ
  in which they produce) is scored by its log-probability after the prompt times the probability that the number
  ends there (no further digit follows, so that "1" is not credited with the mass of "10"), and the best candidate
  wins. Deterministic and never unparseable; it costs one forward pass of 20 short continuations per row.

Models load lazily on first use: `import medvlm_trl.eval.metrics` imports no torch. sentence-transformers comes with
the `metrics` extra (`pip install "medvlm-trl[metrics]"`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from medvlm_trl.data.schema import LETTERS
from medvlm_trl.eval.thinking_judge import (  # noqa: F401 (importable from here, as before)
    DEFAULT_JUDGE_MODEL,
    THINKING_JUDGE_TEMPLATE,
    ThinkingRewardJudge,
    parse_judge_score,
)
from medvlm_trl.loading import load_causal_lm, load_pretrained, model_device, torch_device
from medvlm_trl.rewards import parse_completion

__all__ = [
    "DEFAULT_JUDGE_MODEL",
    "DEFAULT_PERPLEXITY_MODEL",
    "DEFAULT_SIMILARITY_MODEL",
    "METRIC_NAMES",
    "THINKING_JUDGE_TEMPLATE",
    "ReasoningPerplexity",
    "ReasoningSimilarity",
    "ThinkingRewardJudge",
    "mean_std",
    "parse_judge_score",
    "reasoning_metrics",
    "token_lengths",
]

DEFAULT_SIMILARITY_MODEL = "cross-encoder/stsb-roberta-base"
DEFAULT_PERPLEXITY_MODEL = "microsoft/biogpt"
METRIC_NAMES = ("similarity", "perplexity", "thinking_reward", "token_length")


def mean_std(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """Mean and population standard deviation of the values that are not None (and finite), with their count.

    Example:
    ```python
    >>> mean_std([1.0, 3.0, None])
    {'mean': 2.0, 'std': 1.0, 'n': 2}
    ```
    """
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not kept:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(kept) / len(kept)
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in kept) / len(kept)), "n": len(kept)}


class ReasoningSimilarity:
    """Cross-encoder similarity of each reasoning to its reference answer (the study's "similarity score").

    Args:
        model: a sentence-transformers cross-encoder id or local path, or a loaded `CrossEncoder`.
        batch_size: pairs per forward pass.
        device: where it runs (default: CUDA when available, else CPU).
        max_length: longest pair in tokens (default: the model's own).

    Usage: `ReasoningSimilarity()(["The scan is an axial brain MRI."], ["MRI"])` gives one score per pair (in [0, 1]
    for the default model, whose head ends in a sigmoid).
    """

    def __init__(
        self,
        model: Any = DEFAULT_SIMILARITY_MODEL,
        batch_size: int = 16,
        device: Any = None,
        max_length: int | None = None,
    ):
        self.model_name_or_path = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
        self.model = None if self.model_name_or_path else model
        self.batch_size, self.device, self.max_length = batch_size, device, max_length

    def load(self) -> ReasoningSimilarity:
        if self.model is None:
            try:
                from sentence_transformers import CrossEncoder
            except ImportError as err:
                raise ImportError(
                    "the similarity metric needs sentence-transformers: pip install 'medvlm-trl[metrics]'"
                ) from err
            import torch

            device = str(torch_device(torch, self.device))
            self.model = load_pretrained(
                CrossEncoder,
                self.model_name_or_path,
                "similarity cross-encoder (similarity_model)",
                device=device,
                max_length=self.max_length,
            )
        return self

    def __call__(self, reasonings: Sequence[str], references: Sequence[str]) -> list[float]:
        if len(reasonings) != len(references):
            raise ValueError(f"{len(reasonings)} reasonings but {len(references)} references")
        if not reasonings:
            return []
        self.load()
        scores = self.model.predict(
            list(zip(reasonings, references)), batch_size=self.batch_size, show_progress_bar=False
        )
        return [float(s) for s in scores]


class ReasoningPerplexity:
    """Perplexity of each reasoning under a causal LM: exp(mean negative log-likelihood of its tokens after the first).

    Args:
        model: a causal LM id or local path (loaded with `AutoModelForCausalLM`), or a loaded model (then pass
            `tokenizer`).
        tokenizer: its tokenizer (loaded from `model` when that is a path).
        batch_size: texts per forward pass.
        device, dtype: where and in what precision the model runs (default: CUDA when available; transformers' dtype).
        max_length: texts are cut to this many tokens (default: the model's `max_position_embeddings`).

    A text of fewer than two tokens has no perplexity: None.
    """

    def __init__(
        self,
        model: Any = DEFAULT_PERPLEXITY_MODEL,
        tokenizer: Any = None,
        batch_size: int = 8,
        device: Any = None,
        dtype: Any = None,
        max_length: int | None = None,
    ):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.device, self.dtype, self.max_length = batch_size, device, dtype, max_length
        self._ready = False

    def load(self) -> ReasoningPerplexity:
        if not self._ready:
            self.model, self.tokenizer = load_causal_lm(
                self.model, self.tokenizer, self.device, self.dtype, "perplexity model (perplexity_model)"
            )
            if self.max_length is None:
                self.max_length = getattr(self.model.config, "max_position_embeddings", None) or 1024
            pad = self.tokenizer.pad_token_id
            self._pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
            self._ready = True
        return self

    def __call__(self, texts: Sequence[str]) -> list[float | None]:
        self.load()
        import torch

        encoded = [self.tokenizer(t, add_special_tokens=True)["input_ids"][: self.max_length] for t in texts]
        out: list[float | None] = [None] * len(texts)
        todo = [i for i, ids in enumerate(encoded) if len(ids) >= 2]
        device = model_device(self.model)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            width = max(len(encoded[i]) for i in chunk)
            ids = torch.full((len(chunk), width), self._pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):  # right padding: position ids stay those of the unpadded text
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, : len(encoded[i])] = 1
            ids, mask = ids.to(device), mask.to(device)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            target_mask = mask[:, 1:].float()
            nll = -(logp * target_mask).sum(-1) / target_mask.sum(-1)
            for row, i in enumerate(chunk):
                out[i] = float(torch.exp(nll[row]))
        return out


def token_lengths(texts: Sequence[str], tokenizer: Any = None) -> list[int]:
    """Length of each text in tokens of `tokenizer` (an object with `encode`, or a model id / path), or in words."""
    if tokenizer is None:
        return [len(t.split()) for t in texts]
    if isinstance(tokenizer, (str, os.PathLike)):
        from transformers import AutoTokenizer

        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, tokenizer, "tokenizer that counts tokens")
    return [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]


def _reference(record: Mapping) -> str:
    options, answer = record.get("options"), record.get("answer")
    if not isinstance(options, (list, tuple)) or not isinstance(answer, str) or answer not in LETTERS[: len(options)]:
        raise ValueError(f"row {record.get('id')!r}: needs options and a valid answer letter for the reference answer")
    return options[LETTERS.index(answer)]


def reasoning_metrics(
    records: Sequence[Mapping],
    metrics: Iterable[str] = METRIC_NAMES,
    *,
    similarity: ReasoningSimilarity | None = None,
    perplexity: ReasoningPerplexity | None = None,
    judge: ThinkingRewardJudge | None = None,
    length_tokenizer: Any = None,
) -> dict[str, dict]:
    """Compute the asked-for metrics over eval records (`completion`, `question`, `options`, `answer`, `id`).

    Each metric falls back to its default model when its object is not given. Returns, per metric, the mean / std /
    n of [`mean_std`], `missing` (rows without reasoning) and the model used; the judge adds `unparseable`.
    """
    metrics = list(metrics)
    unknown = sorted(set(metrics) - set(METRIC_NAMES))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRIC_NAMES)}")
    thinks = [parse_completion(r.get("completion")).think for r in records]
    keep = [i for i, t in enumerate(thinks) if t]
    texts = [thinks[i] for i in keep]
    missing = len(records) - len(keep)
    out: dict[str, dict] = {}

    def report(values, model, **extra) -> dict:
        return {**mean_std(values), "missing": missing, "model": model, **extra}

    if "similarity" in metrics:
        similarity = similarity or ReasoningSimilarity()
        refs = [_reference(records[i]) for i in keep]
        out["similarity"] = report(similarity(texts, refs), _name(similarity.model_name_or_path or similarity.model))
    if "perplexity" in metrics:
        perplexity = perplexity or ReasoningPerplexity()
        out["perplexity"] = report(perplexity(texts), _name(perplexity.model))
    if "thinking_reward" in metrics:
        judge = judge or ThinkingRewardJudge()
        questions = [str(records[i].get("question", "")) for i in keep]
        grades = judge(texts, questions, [_reference(records[i]) for i in keep])
        out["thinking_reward"] = report(grades, _name(judge.model), mode=judge.mode, unparseable=judge.unparseable)
    if "token_length" in metrics:
        unit = "words" if length_tokenizer is None else "tokens"
        out["token_length"] = report(token_lengths(texts, length_tokenizer), _name(length_tokenizer), unit=unit)
    return out


def _name(model: Any) -> str | None:
    """A printable name for a model argument: its id or path, or the loaded object's `name_or_path`."""
    if model is None or isinstance(model, (str, os.PathLike)):
        return None if model is None else os.fspath(model)
    config = getattr(model, "config", None)
    return getattr(config, "_name_or_path", None) or getattr(model, "name_or_path", None) or type(model).__name__
