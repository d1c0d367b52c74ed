"""Qwen2-VL-2B's architecture with random weights (`qwen2_vl_2b_config.json`), for `grpo_step.py`: the config, a
processor of the tiny tokenizer padded to the 2B vocabulary, and a seeded bf16 build cached under `MEDVLM_TRL_CACHE`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CONFIG_2B = BENCH_DIR / "qwen2_vl_2b_config.json"
# Tokens a random model must not sample: a vision token in a completion breaks the policy's forward pass (image
# features no longer match image tokens). TRL itself suppresses only the image token.
VISION_TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


class BenchError(ValueError):
    """A request the benchmark cannot run (a backend that is not installed, a bad size); reported in one line."""


def load_config_2b(path: str | os.PathLike = CONFIG_2B):
    """`Qwen2VLConfig` from the public Qwen2-VL-2B config kept in `bench/`."""
    from transformers import Qwen2VLConfig

    with open(path) as fh:
        return Qwen2VLConfig.from_dict(json.load(fh))


def padded_processor(vocab_size: int, min_pixels: int, max_pixels: int):
    """The tiny Qwen2-VL processor with its tokenizer padded to `vocab_size` by plain added tokens, and the run's pixel
    bounds as its own (vLLM loads the processor from disk and must resize as the trainer does: not at all)."""
    from transformers import AutoProcessor

    from medvlm_trl.tiny import tiny_vlm_path

    processor = AutoProcessor.from_pretrained(str(tiny_vlm_path()), padding_side="left")
    tokenizer = processor.tokenizer
    missing = vocab_size - len(tokenizer)
    if missing < 0:
        raise BenchError(f"the tiny tokenizer has {len(tokenizer)} tokens, more than the vocabulary {vocab_size}")
    tokenizer.add_tokens([f"<|bench_pad_{i}|>" for i in range(missing)])
    set_pixel_bounds(processor, min_pixels, max_pixels)
    return processor


def set_pixel_bounds(processor, min_pixels: int, max_pixels: int) -> None:
    from transformers.image_utils import SizeDict

    image_processor = processor.image_processor
    image_processor.size = SizeDict(shortest_edge=min_pixels, longest_edge=max_pixels)
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if hasattr(image_processor, name):
            setattr(image_processor, name, value)


def vision_token_ids(config) -> list[int]:
    return [int(getattr(config, key)) for key in VISION_TOKEN_KEYS if getattr(config, key, None) is not None]


def build_random_2b(out: Path, min_pixels: int, max_pixels: int, seed: int, config_path=CONFIG_2B) -> Path:
    """Save Qwen2-VL-2B's architecture with random bf16 weights and the padded tiny processor into `out`."""
    import torch
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration

    config = load_config_2b(config_path)
    processor = padded_processor(config.text_config.vocab_size, min_pixels, max_pixels)
    tokenizer = processor.tokenizer
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in ("<|endoftext|>", "<|im_end|>")}
    # The processor writes the tiny tokenizer's ids for the vision tokens; the model must look for the same ones.
    for key, token in zip(
        VISION_TOKEN_KEYS, ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"), strict=True
    ):
        setattr(config, key, tokenizer.convert_tokens_to_ids(token))
    for cfg in (config, config.text_config):
        cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = (
            ids["<|endoftext|>"],
            ids["<|im_end|>"],
            ids["<|endoftext|>"],
        )
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # initialising 2.2B parameters on a GPU takes seconds, on a CPU minutes
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def random_2b_path(min_pixels: int, max_pixels: int, seed: int) -> Path:
    """The cached random-weight 2B build for these pixel bounds (built on first use, about 4.5 GB on disk)."""
    import transformers

    from medvlm_trl.tiny import build_once, cache_dir

    key_text = f"{CONFIG_2B.read_text()}-{min_pixels}-{max_pixels}-{seed}-{transformers.__version__}"
    target = cache_dir() / f"bench-qwen2-vl-2b-random-{hashlib.sha1(key_text.encode()).hexdigest()[:10]}"
    return build_once(target, lambda out: build_random_2b(out, min_pixels, max_pixels, seed))
