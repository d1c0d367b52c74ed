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
