"""The SFT baseline (MedVLM-R1 section 4): negative log-likelihood on the final answer only, under the simple prompt.
Checked on the labels TRL's `DataCollatorForVisionLanguageModeling` actually builds for the trainer."""

import pytest
from helpers import write_recipe

from medvlm_trl.data.images import ImageLoadError
from medvlm_trl.sft import BaselineScriptArguments, build_dataset, sft_example
from medvlm_trl.tiny import TINY_MAX_PIXELS

QWEN2_VL = 28  # the tiny Qwen2-VL's image factor (patch 14 x merge 2), as its processor gives it


@pytest.fixture(scope="module")
def sample_rows():
    from medvlm_trl.data.sample import load_sample

    return load_sample("train")[:4]


def _trainer(tiny_vlm, dataset, tmp_path, **config):
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(tmp_path),
        report_to="none",
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        max_length=None,
        per_device_train_batch_size=2,
        **config,
    )
    return SFTTrainer(model=tiny_vlm, args=args, train_dataset=dataset)


def test_example_is_prompt_completion_with_the_letter():
    row = {"id": "r1", "question": "Which modality?", "options": ["CT", "MRI", "X-ray"], "answer": "C"}
    example = sft_example(row, "simple")
    assert example["completion"] == [{"role": "assistant", "content": "C"}]
    user = example["prompt"][0]
    assert user["role"] == "user" and user["content"][0] == {"type": "image"}
    assert user["content"][1]["text"].startswith("Which modality?\nA) CT\nB) MRI\nC) X-ray")
    assert "single-letter choice" in user["content"][1]["text"]


def test_only_answer_tokens_carry_labels(tiny_vlm, sample_rows, tmp_path):
    args = BaselineScriptArguments(max_pixels=TINY_MAX_PIXELS)
    dataset = build_dataset(sample_rows, lambda r: sft_example(r, "simple"), args, factor=QWEN2_VL)
    trainer = _trainer(tiny_vlm, dataset, tmp_path, completion_only_loss=True)
    tok = trainer.processing_class.tokenizer
    batch = trainer.data_collator([dict(dataset[i]) for i in range(len(sample_rows))])
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    assistant_start = tok.encode("<|im_start|>assistant\n")
    for i, row in enumerate(sample_rows):
        labels, ids = batch["labels"][i], batch["input_ids"][i]
        labelled = (labels != -100).nonzero().flatten().tolist()
        # Exactly the answer letter and the end-of-turn that closes it (so the model learns to stop).
        assert tok.decode(ids[labelled]) == f"{row['answer']}<|im_end|>\n"
        assert labels[labelled].tolist() == ids[labelled].tolist()
        # Everything labelled comes after the assistant header; no image token is labelled.
        seq = ids.tolist()
        header_end = max(
            j + len(assistant_start) for j in range(len(seq)) if seq[j : j + len(assistant_start)] == assistant_start
        )
        assert min(labelled) == header_end
        assert image_pad in seq and not (labels[ids == image_pad] != -100).any()


def test_without_completion_only_loss_the_prompt_is_labelled(tiny_vlm, sample_rows, tmp_path):
    """The control: the mask above comes from `completion_only_loss`, not from the data."""
    args = BaselineScriptArguments(max_pixels=TINY_MAX_PIXELS)
    dataset = build_dataset(sample_rows[:2], lambda r: sft_example(r, "simple"), args, factor=QWEN2_VL)
    trainer = _trainer(tiny_vlm, dataset, tmp_path, completion_only_loss=False)
    batch = trainer.data_collator([dict(dataset[i]) for i in range(2)])
    assert (batch["labels"][0] != -100).sum() > 10


def test_images_are_resized_once_to_the_pixel_bound(sample_rows):
    args = BaselineScriptArguments(max_pixels=TINY_MAX_PIXELS)
    dataset = build_dataset(sample_rows[:2], lambda r: sft_example(r, "simple"), args, factor=QWEN2_VL)
    for example in dataset:
        (image,) = example["images"]
        assert image.width % 28 == 0 and image.height % 28 == 0
        assert image.width * image.height <= TINY_MAX_PIXELS


def test_unreadable_image_names_the_row_or_is_counted(tmp_path, sample_rows):
    bad = dict(sample_rows[0], id="broken-7", image=str(tmp_path / "missing.png"))
    rows = [bad, sample_rows[1]]
    with pytest.raises(ImageLoadError, match="broken-7"):
        build_dataset(
            rows,
            lambda r: sft_example(r, "simple"),
            BaselineScriptArguments(max_pixels=TINY_MAX_PIXELS),
            factor=QWEN2_VL,
        )

    from medvlm_trl.data.schema import SkipReport

    report = SkipReport()
    args = BaselineScriptArguments(max_pixels=TINY_MAX_PIXELS, skip_bad_rows=True)
    dataset = build_dataset(rows, lambda r: sft_example(r, "simple"), args, report=report, factor=QWEN2_VL)
    assert [e["id"] for e in dataset] == [sample_rows[1]["id"]]
    assert report.counts["unreadable_image"] == 1 and report.examples["unreadable_image"] == ["broken-7"]


def test_no_readable_image_at_all_is_a_recipe_error(tmp_path, sample_rows):
    from medvlm_trl.grpo import RecipeError

    rows = [dict(row, id=f"broken-{i}", image=str(tmp_path / f"missing-{i}.png")) for i, row in enumerate(sample_rows)]
    args = BaselineScriptArguments(max_pixels=TINY_MAX_PIXELS, skip_bad_rows=True)
    with pytest.raises(RecipeError, match=r"no usable training rows.*unreadable_image"):
        build_dataset(rows, lambda r: sft_example(r, "simple"), args, factor=QWEN2_VL)


def test_bad_template_and_pixel_bounds_are_refused():
    with pytest.raises(ValueError, match="prompt_template"):
        BaselineScriptArguments(prompt_template="chatty")
    with pytest.raises(ValueError, match="min_pixels"):
        BaselineScriptArguments(min_pixels=10_000, max_pixels=5_000)
    # Below one image token of the model, its resize would exceed max_pixels: refused once its processor is loaded
    # (tests/data/test_images.py), since the token size is the model's; no model accepts fewer than one pixel.
    with pytest.raises(ValueError, match="min_pixels"):
        BaselineScriptArguments(min_pixels=0, max_pixels=500)


def _tiny_recipe(tmp_path, source, **extra):
    """A real recipe under the tiny profile's overrides (the same set `reproduce-table1 --profile tiny` applies)."""
    import yaml

    from medvlm_trl import reproduce

    data = yaml.safe_load(open(source))
    keys = reproduce.training_keys("sft")
    data = reproduce.apply_overrides(data, reproduce.TINY_TRAIN_OVERRIDES, keys)
    data = reproduce.apply_overrides(data, reproduce.TINY_COMMAND_OVERRIDES["sft"], keys)
    data.update(output_dir=str(tmp_path / "out"), **extra)
    return write_recipe(tmp_path, data)


def test_lora_run_saves_merged_model_adapter_and_card_and_refuses_a_second_run(tiny_vlm, tmp_path, capsys):
    from pathlib import Path

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from medvlm_trl.model_card import read_model_card
    from medvlm_trl.sft import main

    recipes = Path(__file__).resolve().parents[2] / "recipes"
    # Pixel bounds other than the tiny processor's own (3136..50176): the saved processor must carry the run's. The
    # random tiny model on the sample rows, a few steps, as the test was written for.
    recipe = _tiny_recipe(
        tmp_path,
        recipes / "rl_medvqa" / "sft_lora_qwen2vl_2b_instruct.yaml",
        learning_rate=1e-2,
        min_pixels=3136,
        max_pixels=25088,
        model_name_or_path=tiny_vlm,
        dataset_name="sample",
        max_steps=4,
        per_device_train_batch_size=2,
    )
    assert main(["--config", str(recipe)]) == 0
    out = tmp_path / "out"
    saved = AutoProcessor.from_pretrained(out).image_processor.size
    assert (saved.shortest_edge, saved.longest_edge) == (3136, 25088)
    assert (out / "adapter" / "adapter_config.json").is_file() and not (out / "adapter_config.json").exists()
    merged = AutoModelForImageTextToText.from_pretrained(out)
    base = AutoModelForImageTextToText.from_pretrained(tiny_vlm)
    name = next(n for n, _ in base.named_parameters() if n.endswith("self_attn.q_proj.weight"))
    trained, initial = dict(merged.named_parameters())[name], dict(base.named_parameters())[name]
    assert not torch.equal(trained, initial)  # the LoRA update is in the merged weights
    name_k = name.replace("q_proj", "k_proj")  # not a LoRA target: untouched
    assert torch.equal(dict(merged.named_parameters())[name_k], dict(base.named_parameters())[name_k])
    card = read_model_card(out)
    assert card["method"] == "sft" and card["base_model"] == tiny_vlm and card["prompt_template"] == "simple"
    assert card["hyperparameters"]["lora_target_modules"] == ["q_proj", "v_proj"]
    # Run safety: the same output dir again is refused with one line, not a traceback.
    capsys.readouterr()
    assert main(["--config", str(recipe)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_unknown_recipe_key_is_refused_before_loading_anything(tmp_path, capsys):
    from medvlm_trl.sft import main

    path = tmp_path / "bad.yaml"
    path.write_text("model_name_or_path: x\ncompletion_only_los: true\noutput_dir: out\n")
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "completion_only_los" in err and "completion_only_loss" in err


@pytest.mark.parametrize("command", ["sft", "dpo"])
def test_missing_model_is_one_line_not_a_traceback(tmp_path, capsys, command):
    from medvlm_trl.dpo import main as dpo_main
    from medvlm_trl.sft import main as sft_main

    path = tmp_path / "no_model.yaml"
    path.write_text(f"dataset_name: sample\nbf16: false\noutput_dir: {tmp_path / 'out'}\n")
    assert {"sft": sft_main, "dpo": dpo_main}[command](["--config", str(path)]) == 2
    assert "model_name_or_path is required" in capsys.readouterr().err
