"""The papers' reward functions as plain TRL reward callables, importable into any TRL project without torch.

    from trl import GRPOTrainer
    from medvlm_trl.rewards import accuracy_reward, format_reward

    trainer = GRPOTrainer(model=..., reward_funcs=[format_reward, accuracy_reward], ...)

- MedVLM-R1 (Pan et al., section 3): [`format_reward`], [`accuracy_reward`].
- The RL-MedVQA study (Zhu et al., arXiv:2505.13973): [`SemanticJudgeReward`] (section 3.2), [`ecr_length_reward`]
  and [`cwr_length_reward`] (section 3.3).
- [`parse_completion`]: the one parser the rewards, the evaluator and the reasoning metrics share.
- [`get_reward_funcs`]: recipe names (`format`, `accuracy`, `semantic`, `ecr`, `cwr`) -> callables.
"""

from .accuracy import accuracy_reward, format_reward, score_answer
from .judge import (
    FENCED_JUDGE_PROMPT,
    JUDGE_PROMPT_TEMPLATE,
    PAPER_JUDGE_PROMPT,
    SemanticJudgeReward,
    encode_untrusted,
    fence_reasoning,
)
from .length import (
    cwr_length_reward,
    ecr_length_reward,
    make_cwr_length_reward,
    make_ecr_length_reward,
    think_length,
)
from .parsing import Parsed, completion_text, parse_completion, parse_text
from .registry import REWARD_FUNCS, REWARD_NAMES, get_reward_funcs

__all__ = [
    "FENCED_JUDGE_PROMPT",
    "JUDGE_PROMPT_TEMPLATE",
    "PAPER_JUDGE_PROMPT",
    "REWARD_FUNCS",
    "REWARD_NAMES",
    "Parsed",
    "SemanticJudgeReward",
    "accuracy_reward",
    "completion_text",
    "cwr_length_reward",
    "ecr_length_reward",
    "encode_untrusted",
    "fence_reasoning",
    "format_reward",
    "get_reward_funcs",
    "make_cwr_length_reward",
    "make_ecr_length_reward",
    "parse_completion",
    "parse_text",
    "score_answer",
    "think_length",
]
