"""The tiny offline Qwen2-VL behaves like Qwen/Qwen2-VL-2B-Instruct does for every call the library makes."""

import filecmp
import subprocess
import sys

import torch
from PIL import Image
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from medvlm_trl.tiny import QWEN2_VL_SPECIAL_TOKENS, build_tiny_vlm


def test_round_trip_loads_with_auto_classes_and_generates_on_an_image(tiny_vlm):
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm)
    processor = AutoProcessor.from_pretrained(tiny_vlm)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2VLProcessor"
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which modality?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>Which modality?" in text
    assert text.endswith("<|im_start|>assistant\n")
    inputs = processor(text=[text], images=[Image.new("RGB", (112, 84), "gray")], return_tensors="pt")
    n_image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == int(inputs["image_grid_thw"].prod()) // 4 == (112 // 28) * (84 // 28)
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5 or processor.tokenizer.eos_token_id in out[0].tolist()


def test_config_ids_match_the_tokenizer(tiny_vlm):
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm)
    tok = AutoProcessor.from_pretrained(tiny_vlm).tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN2_VL_SPECIAL_TOKENS}
    assert len(set(ids.values())) == len(QWEN2_VL_SPECIAL_TOKENS)
    assert model.config.image_token_id == ids["<|image_pad|>"]
    assert model.config.video_token_id == ids["<|video_pad|>"]
    assert model.config.vision_start_token_id == ids["<|vision_start|>"]
    assert model.config.vision_end_token_id == ids["<|vision_end|>"]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert model.get_input_embeddings().num_embeddings == len(tok)
    # special tokens are single tokens, as in the real tokenizer
    assert tok("<|vision_start|><|image_pad|><|vision_end|>")["input_ids"] == [
        ids["<|vision_start|>"],
        ids["<|image_pad|>"],
        ids["<|vision_end|>"],
    ]
    assert tok.decode(tok("Output <think> A lesion </think><answer>B</answer>")["input_ids"]) == (
        "Output <think> A lesion </think><answer>B</answer>"
    )


def test_two_builds_are_identical(tmp_path):
    a, b = build_tiny_vlm(tmp_path / "a"), build_tiny_vlm(tmp_path / "b")
    names = sorted(p.name for p in a.iterdir())
    assert "model.safetensors" in names and "tokenizer.json" in names
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == []


def test_tiny_causal_lm_scores_text(tiny_lm):
    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    batch = tok(["The scan shows a lesion."], return_tensors="pt")
    with torch.no_grad():
        loss = model(**batch, labels=batch["input_ids"]).loss
    assert torch.isfinite(loss) and loss.item() > 0


def test_make_tiny_model_cli(tmp_path):
    out = tmp_path / "tiny"
    done = subprocess.run(
        [sys.executable, "-m", "medvlm_trl.cli", "make-tiny-model", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (out / "config.json").exists() and (out / "processor_config.json").exists()
    assert AutoProcessor.from_pretrained(out).tokenizer.convert_tokens_to_ids("<|image_pad|>") is not None


# ------------------------------------------------------------------------------------------ the other tiny families

FAMILY_CLASSES = {
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", "Qwen2Tokenizer"),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", "Qwen2Tokenizer"),
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", "Qwen2Tokenizer"),
    "qwen3_5": ("Qwen3_5ForConditionalGeneration", "Qwen3VLProcessor", "Qwen3_5Tokenizer"),
}


def test_each_family_loads_with_the_auto_classes_as_its_own_classes(family, family_vlm, family_factor):
    model = AutoModelForImageTextToText.from_pretrained(family_vlm)
    processor = AutoProcessor.from_pretrained(family_vlm)
    assert model.config.model_type == family
    assert (type(model).__name__, type(processor).__name__, type(processor.tokenizer).__name__) == FAMILY_CLASSES[
        family
    ]
    vision = model.config.vision_config
    assert vision.patch_size * vision.spatial_merge_size == family_factor  # the config and the processor agree
    assert processor.image_processor.patch_size * processor.image_processor.merge_size == family_factor
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which modality?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>Which modality?" in text
    # Qwen2-VL and Qwen2.5-VL add a default system turn; Qwen3-VL and Qwen3.5 do not.
    assert text.startswith("<|im_start|>system\n") == (family in ("qwen2_vl", "qwen2_5_vl"))
    side = family_factor
    inputs = processor(text=[text], images=[Image.new("RGB", (4 * side, 3 * side), "gray")], return_tensors="pt")
    n_image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == int(inputs["image_grid_thw"].prod()) // 4 == 4 * 3
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] <= inputs["input_ids"].shape[1] + 3


def test_each_family_has_its_special_tokens_and_keeps_think_tags_as_text(family, family_vlm):
    model = AutoModelForImageTextToText.from_pretrained(family_vlm)
    tok = AutoProcessor.from_pretrained(family_vlm).tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN2_VL_SPECIAL_TOKENS}
    assert len(set(ids.values())) == len(QWEN2_VL_SPECIAL_TOKENS)
    assert (model.config.image_token_id, model.config.video_token_id) == (ids["<|image_pad|>"], ids["<|video_pad|>"])
    assert tok.eos_token == "<|im_end|>" and model.get_input_embeddings().num_embeddings == len(tok)
    text = "<think> A lesion </think><answer>B</answer>"
    encoded = tok(text)["input_ids"]
    assert tok.decode(encoded, skip_special_tokens=True) == text  # the reward functions read these tags
    # Qwen3's tokenizers have <think> and </think> as single (non-special) tokens; Qwen2's spell them out.
    assert (tok.convert_tokens_to_ids("<think>") in encoded) == (family in ("qwen3_vl", "qwen3_5"))


def test_family_builds_are_seeded(tmp_path):
    from medvlm_trl.tiny_families import build_tiny_family

    a, b = build_tiny_family("qwen3_5", tmp_path / "a"), build_tiny_family("qwen3_5", tmp_path / "b")
    names = sorted(p.name for p in a.iterdir())
    assert "model.safetensors" in names
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == []


def test_make_tiny_model_cli_builds_a_family_and_refuses_an_unknown_one(tmp_path):
    out = tmp_path / "tiny"
    command = [sys.executable, "-m", "medvlm_trl.cli", "make-tiny-model", str(out)]
    done = subprocess.run([*command, "--family", "qwen3_vl"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert AutoModelForImageTextToText.from_pretrained(out).config.model_type == "qwen3_vl"
    bad = subprocess.run([*command, "--family", "qwen4_vl"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'qwen4_vl'" in bad.stderr


def test_a_first_build_prints_no_progress_bar_and_leaves_the_bars_as_they_were(tmp_path, capfd):
    """A command's first use of a tiny model builds it; `save_pretrained`'s "Writing model shards" bar went to stderr
    and broke that command's one-line error (seen on a machine without the cache, under `reproduce-table1`)."""
    from transformers.utils import logging as hf_logging

    from medvlm_trl.tiny import build_once, build_tiny_causal_lm

    assert hf_logging.is_progress_bar_enabled()
    path = build_once(tmp_path / "lm", build_tiny_causal_lm)
    assert (path / "config.json").exists()
    assert "Writing model shards" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
