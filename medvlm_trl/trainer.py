"""`MedVLMGRPOTrainer`: TRL's `GRPOTrainer` with the two things medical VQA on Qwen2-VL needs and TRL leaves out.

1. Images are read and resized once, before generation (MedVLM-R1 section 4.1 trains Qwen2-VL-2B on MRI slices; the
   RL-MedVQA study, section 4, bounds images at `max_pixels = 401408`). A row's image may be a PIL image, a file path
   (PNG, JPEG or DICOM), raw bytes or a `datasets` image dict; it becomes RGB on the grid of the model's own processor
   (`image_factor`: patch size x merge size, 28 pixels for Qwen2-VL and Qwen2.5-VL, 32 for Qwen3-VL and Qwen3.5)
   within the configured pixel bounds (`medvlm_trl.data.images.prepare_image`). The processor's own bounds are set to
   the same values, so its resize is the identity: the policy, the reference model and vLLM all receive the same
   pixels, and the number of image tokens in the prompt (`image_grid_thw.prod() // merge_size**2` per image) agrees
   everywhere. A missing or unreadable image stops training with an `ImageLoadError` naming the row.
2. Rewards are also logged per modality (`reward_by_modality/<modality>/mean`, next to TRL's
   `rewards/<name>/mean`), since both papers report accuracy per modality (MedVLM-R1 Table 1: MRI, CT, X-ray), and
   each logged completion (`log_completions=True`) carries its row's `id` and `modality`.

Everything else (loss, advantages, KL, vLLM, PEFT) is TRL's: `loss_preset` in `MedVLMGRPOConfig` maps onto TRL's
`loss_type` and `scale_rewards`. Only two hooks are overridden, each calling `super()`, so mixins (such as the vLLM
prompt fix) can be stacked in front of this class.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from medvlm_trl.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, pin_processor_pixels, prepare_image
from medvlm_trl.vllm_compat import VLLMColocatePromptMixin

logger = logging.getLogger(__name__)

# Columns whose per-completion values are added to TRL's completion log (`log_completions`).
LOGGED_ROW_COLUMNS = ("id", "modality")


class MedVLMGRPOTrainer(VLLMColocatePromptMixin, GRPOTrainer):
    """GRPO / Dr.GRPO for the Qwen VL families on medical multiple-choice VQA (MedVLM-R1, section 3; RL-MedVQA study, section 3).

    Takes the same arguments as `trl.GRPOTrainer`. With a `MedVLMGRPOConfig`, its `min_pixels` / `max_pixels` bound
    every image; with a plain `GRPOConfig`, Qwen2-VL's default minimum and the study's maximum (401408) apply.

    Example:
    ```python
    trainer = MedVLMGRPOTrainer(
        model=model,  # a loaded Qwen2-VL, or its id / path
        processing_class=processor,  # AutoProcessor.from_pretrained(..., padding_side="left")
        reward_funcs=[format_reward, accuracy_reward],
        args=MedVLMGRPOConfig(output_dir="runs/r1", loss_preset="grpo", beta=0.04),
        train_dataset=dataset,  # contract rows with a `prompt` column
    )
    trainer.train()
    ```
    """

    _tag_names = ["trl", "grpo", "medvlm-trl"]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.min_pixels = int(getattr(self.args, "min_pixels", DEFAULT_MIN_PIXELS))
        self.max_pixels = int(getattr(self.args, "max_pixels", DEFAULT_MAX_PIXELS))
        # Pixels per image-token side of this model's processor; None for a text-only model (no images to size).
        self.image_factor = None
        if self._is_vlm:
            self.image_factor = pin_processor_pixels(self.processing_class, self.min_pixels, self.max_pixels)
            # TRL left-pads prompt ids by hand but lets the processor pad the per-token multimodal fields
            # (mm_token_type_ids) of the forward pass: with right padding those would no longer line up.
            if self._tokenizer.padding_side != "left":
                logger.warning("Setting the processor's padding side to 'left', as GRPO requires.")
                self._tokenizer.padding_side = "left"

    def _prepare_row_images(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Copies of the rows with every image read as RGB and resized once to the pixel bounds.

        TRL repeats each row `num_generations` times in a generation batch; the repeats of a row (same `id`) share
        one conversion. The rows themselves are not modified. TRL reads `images` (a list) in preference to `image`,
        judging by the first row; so do we.
        """
        if not inputs:
            return inputs
        key = "images" if "images" in inputs[0] else "image" if "image" in inputs[0] else None
        if key is None:
            return inputs
        done: dict[Any, Any] = {}
        rows = []
        for index, row in enumerate(inputs):
            row_id = row.get("id")
            value = row.get(key)
            # A path is part of the key, so two rows that wrongly share an id still get their own images.
            cache_key = (row_id, value if isinstance(value, str) else None) if row_id is not None else index
            if cache_key not in done:
                name = None if row_id is None else str(row_id)
                if key == "images":
                    done[cache_key] = [self._prepare_image(v, name) for v in (value or [])]
                else:
                    done[cache_key] = self._prepare_image(value, name)
            rows.append({**row, key: done[cache_key]})
        return rows

    def _prepare_image(self, value: Any, row_id: str | None):
        return prepare_image(
            value, min_pixels=self.min_pixels, max_pixels=self.max_pixels, row_id=row_id, factor=self.image_factor
        )

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        # The one place where TRL reads the rows' images (for generation, the policy and the reference forward
        # passes alike): convert them here, once, and everything downstream sees the same pixels.
        return super()._generate_and_score_completions(self._prepare_row_images(inputs))

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        for column in LOGGED_ROW_COLUMNS:
            if column in inputs[0]:
                self._log_completion_extra(column, [str(row.get(column)) for row in inputs])
        if "modality" in inputs[0]:
            self._log_reward_by_modality([str(row.get("modality")) for row in inputs], rewards_per_func)
        return rewards_per_func

    def _log_reward_by_modality(self, modalities: list[str], rewards_per_func: torch.Tensor) -> None:
        """Mean weighted reward per modality over the whole (all-process) batch, as TRL's `reward` is computed."""
        mode = "train" if self.model.training else "eval"
        # TRL gathers the rewards of all processes, in process order; gather the modalities the same way.
        modalities = gather_object(modalities)
        weights = self.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan  # no reward applied: not a zero
        for modality in sorted(set(modalities)):
            selected = torch.tensor([m == modality for m in modalities], device=rewards.device)
            mean = torch.nanmean(rewards[selected]).item()
            if not math.isnan(mean):
                self._metrics[mode][f"reward_by_modality/{modality}/mean"].append(mean)
