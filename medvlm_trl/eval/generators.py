"""The generators of `medvlm-trl eval`: greedy completions from Hugging Face `generate` (batched, left padding) or
vLLM, each given the images already resized to the model's grid and the processor the same pixel bounds.

A generator maps conversational prompts and their images (one list per prompt) to completion texts, so tests can
pass their own (`Generator`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medvlm_trl.configs import EvalArguments
from medvlm_trl.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, check_factor_bounds, image_factor
from medvlm_trl.errors import EvalInputError
from medvlm_trl.loading import load_pretrained, resolve_dtype

# A generator maps conversational prompts and their images (one list per prompt) to completion texts.
Generator = Callable[[list[list[dict]], list[list[Any]]], list[str]]


def _torch_dtype(torch, dtype: str, device) -> Any:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return resolve_dtype(torch, dtype)


def _size_kwargs(processor, min_pixels: int, max_pixels: int) -> dict:
    """The processor-call kwargs that set the pixel bounds, for Qwen2-VL-style image processors (those that merge
    patches, whose `size` holds pixel counts as `shortest_edge` / `longest_edge`); other processors keep their own
    sizing, since their `shortest_edge` is a side length, not a pixel count."""
    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)

    def get(key: str):
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    if hasattr(image_processor, "merge_size") and get("shortest_edge") and get("longest_edge"):
        return {"size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}}
    return {}


def _checked_factor(processor, model: str, min_pixels: int, max_pixels: int) -> int | None:
    """The processor's `image_factor`, after checking that the bounds hold one image token of it."""
    factor = image_factor(processor)
    if factor is not None:
        try:
            check_factor_bounds(min_pixels, max_pixels, factor, f"model {model!r}")
        except ValueError as err:
            raise EvalInputError(str(err)) from None
    return factor


def model_image_factor(model: str, min_pixels: int, max_pixels: int, trust_remote_code: bool = False) -> int | None:
    """The `image_factor` of `model`'s processor (loaded from its folder or the hub cache), bounds checked; read
    before the model itself is loaded, so that every image is prepared on the grid the model will see."""
    from transformers import AutoProcessor

    processor = load_pretrained(
        AutoProcessor.from_pretrained, model, "processor (--model)", trust_remote_code=trust_remote_code
    )
    return _checked_factor(processor, model, min_pixels, max_pixels)


class HFGenerator:
    """Greedy batched generation with transformers: `AutoModelForImageTextToText` + `AutoProcessor`, left padding."""

    name = "hf"

    def __init__(
        self,
        model: str,
        *,
        max_new_tokens: int = 512,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        dtype: str = "auto",
        device: str | None = None,
        trust_remote_code: bool = False,
        chat_template_kwargs: dict | None = None,
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.processor = load_pretrained(
            AutoProcessor.from_pretrained, model, "processor (--model)", trust_remote_code=trust_remote_code
        )
        # Batched generation continues every prompt from the last column, so the padding goes on the left.
        self.processor.tokenizer.padding_side = "left"
        self.model = load_pretrained(
            AutoModelForImageTextToText.from_pretrained,
            model,
            "model (--model)",
            dtype=_torch_dtype(torch, dtype, self.device),
            trust_remote_code=trust_remote_code,
        ).to(self.device)
        self.model.eval()
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.max_new_tokens = max_new_tokens
        self.image_factor = _checked_factor(self.processor, model, min_pixels, max_pixels)
        self.size_kwargs = _size_kwargs(self.processor, min_pixels, max_pixels)
        tok = self.processor.tokenizer
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def __call__(self, prompts: list[list[dict]], images: list[list[Any]]) -> list[str]:
        import torch

        texts = [
            self.processor.apply_chat_template(
                p, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
            )
            for p in prompts
        ]
        flat = [image for row_images in images for image in row_images]
        inputs = self.processor(
            text=texts, images=flat or None, padding=True, return_tensors="pt", **self.size_kwargs
        ).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=self.pad_token_id,
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)


class VLLMGenerator:
    """Greedy generation with vLLM: the chat-templated text prompt plus the prepared image(s) as `multi_modal_data`,
    with vLLM's processor given the same pixel bounds (so the images it sees are the ones we prepared)."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        max_new_tokens: int = 512,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        dtype: str = "auto",
        seed: int = 42,
        gpu_memory_utilization: float = 0.9,
        max_images_per_prompt: int = 1,
        trust_remote_code: bool = False,
        chat_template_kwargs: dict | None = None,
    ):
        from transformers import AutoProcessor
        from vllm import LLM, SamplingParams

        self.processor = load_pretrained(
            AutoProcessor.from_pretrained, model, "processor (--model)", trust_remote_code=trust_remote_code
        )
        self.image_factor = _checked_factor(self.processor, model, min_pixels, max_pixels)
        self.llm = LLM(
            model=model,
            dtype=dtype,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            limit_mm_per_prompt={"image": max_images_per_prompt},
            mm_processor_kwargs={"min_pixels": min_pixels, "max_pixels": max_pixels},
            trust_remote_code=trust_remote_code,
        )
        self.params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})

    def __call__(self, prompts: list[list[dict]], images: list[list[Any]]) -> list[str]:
        requests = []
        for prompt, row_images in zip(prompts, images):
            text = self.processor.apply_chat_template(
                prompt, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
            )
            request: dict[str, Any] = {"prompt": text}
            if row_images:
                request["multi_modal_data"] = {"image": row_images if len(row_images) > 1 else row_images[0]}
            requests.append(request)
        outputs = self.llm.generate(requests, sampling_params=self.params, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]


def vllm_available() -> bool:
    """vLLM is importable and a CUDA GPU is visible (the guarded check behind `--backend auto`)."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    import torch

    return torch.cuda.is_available()


class _LazyGenerator:
    """Loads the model on the first batch, so that a finished or mismatched resume never pays for loading it; its
    `image_factor` loads only the model's processor."""

    def __init__(self, factory: Callable[[], Generator], factor: Callable[[], int | None] | None = None):
        self.factory, self.generator, self.factor, self._image_factor = factory, None, factor, None

    @property
    def image_factor(self) -> int | None:
        if self.generator is not None:
            return getattr(self.generator, "image_factor", None)
        if self._image_factor is None and self.factor is not None:
            self._image_factor = self.factor()
        return self._image_factor

    def __call__(self, prompts: list[list[dict]], images: list[list[Any]]) -> list[str]:
        if self.generator is None:
            self.generator = self.factory()
        return self.generator(prompts, images)


def make_generator(args: EvalArguments, backend: str, max_images_per_prompt: int = 1) -> Generator:
    common = dict(
        max_new_tokens=args.max_new_tokens,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        chat_template_kwargs=args.chat_template_kwargs,
    )
    if backend == "vllm":
        return VLLMGenerator(
            args.model,
            dtype=args.dtype,
            seed=args.seed,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_images_per_prompt=max_images_per_prompt,
            trust_remote_code=args.trust_remote_code,
            **common,
        )
    return HFGenerator(
        args.model, dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code, **common
    )
