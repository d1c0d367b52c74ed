"""vLLM colocated rollouts for the Qwen VL families that start from the prompt the policy scores.

GRPO's objective (MedVLM-R1, section 3, eq. 1; RL-MedVQA study, section 3.1) weights the log-probabilities of the
sampled completions under the policy, conditioned on the question and its image. With `use_vllm=True,
vllm_mode="colocate"`, TRL 1.16 samples those completions with vLLM but hands it the prompt ids that the Hugging Face
processor has already expanded (one `<|image_pad|>` per image token: a 28x28 block of the image for Qwen2-VL and
Qwen2.5-VL, 32x32 for Qwen3-VL and Qwen3.5) together with the image itself
(`trl/generation/vllm_generation.py`, `VLLMGeneration.generate`). vLLM then runs Qwen2-VL's multimodal processor on
those ids: it replaces the first `<|image_pad|>` it finds for each image with that image's full run of tokens and keeps
the rest as text (vLLM v0.31.0, `vllm/model_executor/models/qwen2_vl.py`,
`Qwen2VLMultiModalProcessor._get_prompt_updates`; `vllm/multimodal/processing/processor.py`,
`_plan_prompt_updates_with`). An image of K tokens therefore reaches the model as 2K - 1 image tokens, of which only
the first K carry the image, and with two images the second one's features land inside the first one's run. Nothing
fails: the rollouts are sampled from a corrupted prompt, scored by the policy on the correct one, and the rewards are
still logged. Known upstream as huggingface/trl#6294 (open), #6401 (mixed image sizes, M-RoPE crash or silent
corruption) and #4488 (image features and image tokens do not match).

What this module changes, and nothing else:

- Every request handed to the colocated `vllm.LLM` carries the prompt as the chat template wrote it: each run of
  image tokens collapsed back to the single `<|image_pad|>` between `<|vision_start|>` and `<|vision_end|>`, with the
  image that the trainer has already resized (`medvlm_trl.data.images.prepare_image`). vLLM expands each placeholder
  itself, exactly once, to the number of tokens its own processor computes for that image.
- Every prompt vLLM reports back (`RequestOutput.prompt_token_ids`, the ids it generated from) is compared with the ids
  the policy scores. Any difference, in any row, stops training with `RolloutPromptMismatchError` naming the row and
  both image-token counts, instead of training on rollouts of another prompt.

The policy side (`_tokenize_prompts`, the forward pass, the reference model) is untouched. vLLM server mode, which
ships precomputed image features, is left to TRL. This is written against TRL 1.16, which sends the expanded ids
(`tests/training/test_vllm_colocate.py` measures it); a TRL release that sends un-expanded ids itself (the open fix,
huggingface/trl#6718) makes this layer unnecessary, and its check would then stop training at the first rollout.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from medvlm_trl.errors import RolloutPromptMismatchError

logger = logging.getLogger(__name__)

# Model types whose vLLM processor replaces one image placeholder token with a run of that same token, of length
# `grid_t * grid_h * grid_w // merge_size**2` of the image processor's grid: vLLM v0.31.0's Qwen2-VL processor, which
# Qwen2.5-VL's subclasses; vLLM's Qwen3-VL processor (`vllm/model_executor/models/qwen3_vl.py`,
# `Qwen3VLMultiModalProcessor._get_prompt_updates`: target `hf_processor.image_token`, replacement
# `[image_token_id] * num_tokens`), whose processing Qwen3.5's vLLM model reuses. The token count follows each model's
# own patch and merge size, so the collapsed placeholder is re-expanded on that model's grid. For any other model the
# prompts are still checked, but not rewritten.
COLLAPSE_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5")
QWEN2_VL_MODEL_TYPES = COLLAPSE_MODEL_TYPES  # the name before Qwen3-VL and Qwen3.5 were added


def image_token_runs(prompt_ids: Sequence[int], image_token_id: int) -> list[int]:
    """Lengths of the runs of `image_token_id` in `prompt_ids`, in order: one run per image in a Qwen2-VL prompt.

    >>> image_token_runs([1, 9, 9, 9, 2, 9, 3], image_token_id=9)
    [3, 1]
    """
    runs: list[int] = []
    previous = None
    for token in prompt_ids:
        if token == image_token_id:
            if previous == image_token_id:
                runs[-1] += 1
            else:
                runs.append(1)
        previous = token
    return runs


def collapse_image_placeholders(prompt_ids: Sequence[int], image_token_id: int) -> list[int]:
    """The prompt with every run of image tokens replaced by one image token, as Qwen2-VL's chat template writes it.

    This undoes the Hugging Face processor's expansion, so that vLLM's own expansion is the only one.

    >>> collapse_image_placeholders([1, 9, 9, 9, 2, 9, 9, 3], image_token_id=9)
    [1, 9, 2, 9, 3]
    """
    collapsed: list[int] = []
    for token in prompt_ids:
        if token == image_token_id and collapsed and collapsed[-1] == image_token_id:
            continue
        collapsed.append(token)
    return collapsed


def _image_sizes(multi_modal_data: Any) -> list[tuple[int, int]]:
    images = (multi_modal_data or {}).get("image")
    if images is None:
        return []
    images = images if isinstance(images, (list, tuple)) else [images]
    return [tuple(getattr(image, "size", ())) for image in images]


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return min(len(a), len(b))


class ColocatedVLLMPromptGuard:
    """Wraps TRL's colocated `vllm.LLM`: un-expands image placeholders on the way in, checks prompts on the way out.

    Only `generate` is intercepted; every other attribute (`llm_engine` for the weight sync, `sleep`, `wake_up`,
    `reset_prefix_cache`, ...) is the wrapped engine's.

    Args:
        llm: the `vllm.LLM` that TRL created.
        image_token_id: the model's image placeholder token (`config.image_token_id`).
        collapse: whether to un-expand image placeholders (True for `COLLAPSE_MODEL_TYPES`); when False the prompts
            are only checked.
    """

    def __init__(self, llm: Any, image_token_id: int | None, collapse: bool = True):
        self.llm = llm
        self.image_token_id = image_token_id
        self.collapse = collapse and image_token_id is not None
        # Dataset ids of the rows of the current generation batch, in request order (set by the trainer mixin).
        self.row_ids: list[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set in __init__: everything but `generate` is the engine's own.
        return getattr(self.__dict__["llm"], name)

    def generate(self, prompts: Any, *args: Any, **kwargs: Any) -> Any:
        single = isinstance(prompts, (dict, str))
        requests = [prompts] if single else list(prompts)
        sent, expected = [], []
        for request in requests:
            ids = request.get("prompt_token_ids") if isinstance(request, dict) else None
            expected.append(list(ids) if ids is not None else None)
            if ids is not None and self.collapse and request.get("multi_modal_data"):
                request = {**request, "prompt_token_ids": collapse_image_placeholders(ids, self.image_token_id)}
            sent.append(request)
        outputs = self.llm.generate(sent[0] if single else sent, *args, **kwargs)
        # Row ids name the requests only when they are this batch's rows in order (not a tool-call subset).
        row_ids = self.row_ids if self.row_ids is not None and len(self.row_ids) == len(requests) else None
        for index, (request, want, output) in enumerate(zip(requests, expected, outputs)):
            if want is not None and list(output.prompt_token_ids) != want:
                row = f"request {index}" if row_ids is None else f"request {index} (row {row_ids[index]!r})"
                raise RolloutPromptMismatchError(self._describe(row, request, want, list(output.prompt_token_ids)))
        return outputs

    def _describe(self, row: str, request: dict, want: list[int], got: list[int]) -> str:
        sizes = _image_sizes(request.get("multi_modal_data"))
        where = _first_difference(want, got)
        message = (
            f"{row}: vLLM generated from {len(got)} prompt tokens but the policy scores {len(want)} "
            f"(first difference at position {where}). "
        )
        if self.image_token_id is not None:
            message += (
                f"Image tokens per image: policy {image_token_runs(want, self.image_token_id)}, "
                f"vLLM {image_token_runs(got, self.image_token_id)}; images (width, height): {sizes}. "
            )
        if self.collapse:
            message += (
                "The placeholders were sent un-expanded, so vLLM's image processor most likely sized an image "
                "differently from the trainer's: vLLM reads min_pixels/max_pixels from the model folder's "
                "preprocessor config, and those bounds must contain the trainer's (min_pixels/max_pixels)."
            )
        else:
            message += (
                "This model's image placeholders are not un-expanded here (only the Qwen VL families' are), and vLLM "
                "expanded the already-expanded prompt again (huggingface/trl#6294); generate with transformers "
                "(use_vllm=False) instead."
            )
        return message


def _image_token_id(model: Any) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "image_token_id", None)


class VLLMColocatePromptMixin:
    """Put in front of `trl.GRPOTrainer` in a class's bases to make vLLM colocated rollouts of the Qwen VL families
    (`COLLAPSE_MODEL_TYPES`) correct.

    `class MedVLMGRPOTrainer(VLLMColocatePromptMixin, GRPOTrainer)`: after TRL has built its colocated engine, the
    engine is wrapped in a `ColocatedVLLMPromptGuard`, so that vLLM samples each rollout from the same token ids,
    with the same number of image tokens per image, as the policy and the reference model score (huggingface/trl#6294,
    #6401, #4488). Without `use_vllm`, in server mode or for a text-only model, nothing changes.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._vllm_prompt_guard = None
        if not (getattr(self, "use_vllm", False) and self.vllm_mode == "colocate" and self._is_vlm):
            return
        model = self.accelerator.unwrap_model(self.model)
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        collapse = model_type in COLLAPSE_MODEL_TYPES
        if not collapse:
            logger.warning(
                "vLLM colocate with %s: image placeholders are un-expanded only for %s; rollout prompts will be "
                "checked, and a mismatch stops training (huggingface/trl#6294).",
                model_type,
                ", ".join(COLLAPSE_MODEL_TYPES),
            )
        guard = ColocatedVLLMPromptGuard(self.vllm_generation.llm, _image_token_id(model), collapse=collapse)
        self.vllm_generation.llm = guard
        self._vllm_prompt_guard = guard

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        # Colocated vLLM receives this process's rows in order (num_generations copies each, n=1), so request i of a
        # mismatch report is row i here; with tensor parallelism it receives the whole group's rows instead.
        if self._vllm_prompt_guard is not None and self.vllm_tensor_parallel_size == 1:
            self._vllm_prompt_guard.row_ids = [row.get("id") for row in inputs]
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            if self._vllm_prompt_guard is not None:
                self._vllm_prompt_guard.row_ids = None
