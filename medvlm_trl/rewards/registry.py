"""Recipe names -> reward callables, as open-r1's `get_reward_funcs` does it.

A recipe lists rewards by name (`reward_funcs: [format, accuracy]`); their weights are TRL's own
`GRPOConfig.reward_weights`, in the same order. Only `semantic` needs construction (it holds a judge model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .accuracy import accuracy_reward, format_reward
from .judge import SemanticJudgeReward
from .length import (
    DEFAULT_TARGET_LENGTH,
    DEFAULT_WEIGHT,
    cwr_length_reward,
    ecr_length_reward,
    make_cwr_length_reward,
    make_ecr_length_reward,
)

__all__ = ["REWARD_FUNCS", "REWARD_NAMES", "get_reward_funcs"]

# The rewards that need no construction, by recipe name.
REWARD_FUNCS: dict[str, Callable[..., list[float]]] = {
    "format": format_reward,
    "accuracy": accuracy_reward,
    "ecr": ecr_length_reward,
    "cwr": cwr_length_reward,
}
# Every name a recipe may use.
REWARD_NAMES: tuple[str, ...] = ("format", "accuracy", "semantic", "ecr", "cwr")


def get_reward_funcs(
    names: str | Iterable[str],
    *,
    semantic_judge_model: Any = None,
    semantic_judge_kwargs: dict | None = None,
    semantic_judge_prompt: str | None = None,
    length_weight: float | None = None,
    length_target: int | None = None,
    length_tokenizer: Any = None,
) -> list[Callable[..., list[float]]]:
    """The reward callables for recipe names, in order.

    Args:
        names: recipe names among `format`, `accuracy`, `semantic`, `ecr`, `cwr` (a single name may be a string).
        semantic_judge_model: the judge for `semantic` (model id, local path or loaded model); required with it.
        semantic_judge_kwargs: more [`SemanticJudgeReward`] arguments (`tokenizer`, `batch_size`, `dtype`, ...).
        semantic_judge_prompt: the judge's prompt by name, `paper` (the study's Fig. 1 wording, the default) or
            `fenced` (the injection-resistant one); see `medvlm_trl.rewards.judge`.
        length_weight, length_target, length_tokenizer: parameters of `ecr` and `cwr` (see
            [`make_ecr_length_reward`]); the module defaults when left out.

    Example:
    ```python
    >>> [f.__name__ for f in get_reward_funcs(["format", "accuracy"])]
    ['format_reward', 'accuracy_reward']
    ```
    """
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [name for name in names if name not in REWARD_NAMES]
    if unknown:
        raise ValueError(f"unknown reward name(s) {unknown}; valid names are {list(REWARD_NAMES)}")
    if "semantic" in names and semantic_judge_model is None:
        raise ValueError("the `semantic` reward needs a judge model: pass semantic_judge_model=<model id or path>")
    custom_length = length_weight is not None or length_target is not None or length_tokenizer is not None
    weight = DEFAULT_WEIGHT if length_weight is None else length_weight
    target = DEFAULT_TARGET_LENGTH if length_target is None else length_target

    funcs = []
    judge = None
    for name in names:
        if name == "semantic":
            if judge is None:  # one judge model however often the name is listed
                kwargs = dict(semantic_judge_kwargs or {})
                if semantic_judge_prompt is not None:
                    kwargs.setdefault("prompt", semantic_judge_prompt)
                judge = SemanticJudgeReward(semantic_judge_model, **kwargs)
            funcs.append(judge)
        elif name == "ecr" and custom_length:
            funcs.append(make_ecr_length_reward(weight, target, length_tokenizer))
        elif name == "cwr" and custom_length:
            funcs.append(make_cwr_length_reward(weight, target, length_tokenizer))
        else:
            funcs.append(REWARD_FUNCS[name])
    return funcs
