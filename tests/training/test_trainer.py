"""MedVLMGRPOTrainer on the tiny offline Qwen2-VL: one GRPO / Dr.GRPO step trains (full and LoRA), the advantages
and the loss normaliser TRL computes under each preset are the papers' formulas, every image reaches the policy
once-resized within the pixel bounds, and bad images or per-modality logs behave as documented."""

import math
import statistics

import pandas as pd
import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from PIL import Image
from pydicom.data import get_testdata_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from medvlm_trl import MedVLMGRPOConfig, MedVLMGRPOTrainer
from medvlm_trl.data.images import ImageLoadError, image_factor, prepare_image, smart_resize
from medvlm_trl.data.prompts import build_prompt

G = 4  # generations per prompt


def make_row(row_id, image, modality="MRI"):
    options = ["CT", "MRI", "X-ray"]
    question = "Which imaging modality is shown?"
    return {
        "id": row_id,
        "image": image,
        "question": question,
        "options": options,
        "answer": "B",
        "modality": modality,
        "source": "test",
        "prompt": build_prompt(question, options, "r1"),
    }


def picture(width, height, shade=90):
    """A non-uniform grayscale picture, as a radiograph would be, converted to RGB by the trainer."""
    image = Image.linear_gradient("L").resize((width, height))
    return Image.eval(image, lambda v: (v + shade) % 256)


def low_token_share(completion_ids, **kwargs):
    """Test-only reward with variance on a random model: the share of completion tokens in the lower half of the
    vocabulary (format and accuracy rewards are all 0 there, so their advantages and gradients would be 0)."""
    return [sum(t < 512 for t in ids) / max(len(ids), 1) for ids in completion_ids]


class CapturingTrainer(MedVLMGRPOTrainer):
    """Records what TRL computed: the scored batch (rows in order) and each loss with its inputs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scored, self.losses = [], []

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.scored.append({k: v.detach().clone() for k, v in output.items() if isinstance(v, torch.Tensor)})
        return output

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        kept = {k: v.detach().clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        self.losses.append((loss.detach().clone(), kept))
        return loss


@pytest.fixture
def processor(tiny_vlm):
    return AutoProcessor.from_pretrained(tiny_vlm, padding_side="left")


@pytest.fixture
def family_processor(family_vlm):
    return AutoProcessor.from_pretrained(family_vlm, padding_side="left")


def patch_of(processor):
    return processor.image_processor.patch_size


def merged(processor):
    return processor.image_processor.merge_size**2


def make_trainer(tiny_vlm, processor, tmp_path, rows, reward_funcs, peft_config=None, **overrides):
    settings = dict(
        output_dir=str(tmp_path / "out"),
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=G * 2,  # two prompts x G generations per step
        num_generations=G,
        max_completion_length=8,
        max_steps=1,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
    )
    factor = image_factor(processor)
    settings.update(min_pixels=4 * factor * factor, max_pixels=16 * factor * factor)
    settings.update(overrides)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm, dtype=torch.float32)
    return CapturingTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=MedVLMGRPOConfig(**settings),
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        peft_config=peft_config,
    )


def two_rows():
    return [make_row("mri-1", picture(96, 80), "MRI"), make_row("ct-1", picture(64, 64, 10), "CT")]


# ------------------------------------------------------------------------------------------------ one training step


def check_one_step_trains(model_path, processor, tmp_path, preset, lora):
    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]) if lora else None
    trainer = make_trainer(
        model_path, processor, tmp_path, two_rows(), [low_token_share], peft_config, loss_preset=preset, beta=0.04
    )
    assert (trainer.loss_type, trainer.scale_rewards) == {"grpo": ("grpo", "group"), "dr_grpo": ("dr_grpo", "none")}[
        preset
    ]
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()

    assert trainer.scored[0]["advantages"].abs().sum() > 0, "the test reward must give a learning signal"
    loss = trainer.state.log_history[-1]["train_loss"]
    assert math.isfinite(loss)
    assert all(torch.isfinite(loss).all() for loss, _ in trainer.losses)
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())}
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert changed, "no parameter moved"
    assert changed <= trainable
    if lora:
        assert all("lora_" in n for n in changed)
        assert any("lora_B" in n for n in changed)  # B starts at zero, so it is the first to move
    else:
        assert any("language_model" in n for n in changed)


@pytest.mark.parametrize("preset", ["grpo", "dr_grpo"])
def test_one_step_trains_on_every_family(family_vlm, family_processor, tmp_path, preset):
    """One GRPO and one Dr.GRPO step, full fine-tuning with the KL term, on each tiny family."""
    check_one_step_trains(family_vlm, family_processor, tmp_path, preset, lora=False)


@pytest.mark.parametrize("preset", ["grpo", "dr_grpo"])
def test_one_lora_step_trains(tiny_vlm, processor, tmp_path, preset):
    check_one_step_trains(tiny_vlm, processor, tmp_path, preset, lora=True)


# ---------------------------------------------------------------------------------- advantages and loss normaliser

# Known rewards for the generation batch, in TRL's order (prompt-major, G completions per prompt).
KNOWN_REWARDS = [1.0, 0.0, 0.0, 1.0, 3.0, 1.0, 2.0, 2.0]


def known_reward(completions, **kwargs):
    assert len(completions) == len(KNOWN_REWARDS)
    return list(KNOWN_REWARDS)


def paper_advantages(rewards, scale):
    """GRPO (DeepSeekMath eq. 3, as TRL computes it with the sample std): (r - mean) / std per group;
    Dr.GRPO (Liu et al., section 3.1): r - mean."""
    out = []
    for start in range(0, len(rewards), G):
        group = rewards[start : start + G]
        mean, std = statistics.fmean(group), statistics.stdev(group)
        out += [(r - mean) / std if scale else r - mean for r in group]
    return out


@pytest.mark.parametrize("preset", ["grpo", "dr_grpo"])
def test_advantages_and_loss_normaliser_follow_the_paper(tiny_vlm, processor, tmp_path, preset):
    # Stop generation at many token ids, so that completion lengths differ and the two normalisers disagree.
    stops = list(range(3, 1000, 6))
    trainer = make_trainer(
        tiny_vlm,
        processor,
        tmp_path,
        two_rows(),
        [known_reward],
        loss_preset=preset,
        generation_kwargs={"eos_token_id": stops},
    )
    trainer.train()

    advantages = trainer.scored[0]["advantages"].tolist()
    expected = paper_advantages(KNOWN_REWARDS, scale=preset == "grpo")
    assert advantages == pytest.approx(expected, rel=1e-3, abs=1e-4)

    (loss, inputs), *_ = trainer.losses
    A, lengths = inputs["advantages"], inputs["completion_mask"].sum(dim=1).float()
    assert len(set(lengths.tolist())) > 1, "completion lengths should differ for this check"
    # First step of one iteration: the ratio is 1, so each token's loss is -A_i.
    if preset == "grpo":  # per-response length normalisation: each response weighs -A_i
        expected_loss = -A.mean()
    else:  # a constant normaliser, batch size x max_completion_length: each response weighs -A_i |o_i|
        expected_loss = -(A * lengths).sum() / (len(A) * trainer.max_completion_length)
    assert loss.item() == pytest.approx(expected_loss.item(), abs=1e-6)


# --------------------------------------------------------------------------------------------------------- images


def image_token_counts(trainer, inputs):
    image_token_id = trainer.model.config.image_token_id
    return (inputs["prompt_ids"] == image_token_id).sum(dim=1).tolist()


def test_large_and_tiny_images_end_within_bounds_with_matching_tokens(family_vlm, family_processor, tmp_path):
    processor = family_processor
    factor, patch = image_factor(processor), patch_of(processor)
    large, tiny = picture(2000, 1500), picture(30, 30)
    rows = [make_row("large", large), make_row("tiny", tiny, "CT")]
    processor.tokenizer.padding_side = "right"  # the trainer must put it back to left
    # Bounds on both sides of the processor's own (4 to 64 tokens), so a second resize by it would show.
    bounds = dict(min_pixels=factor * factor, max_pixels=100 * factor * factor)
    trainer = make_trainer(family_vlm, processor, tmp_path, rows, [low_token_share], **bounds)
    assert trainer.image_factor == factor
    min_pixels, max_pixels = trainer.args.min_pixels, trainer.args.max_pixels
    size = processor.image_processor.size
    assert (size.shortest_edge, size.longest_edge) == (min_pixels, max_pixels), "processor bounds not pinned"
    assert processor.tokenizer.padding_side == "left"
    trainer.train()

    (_, inputs), *_ = trainer.losses
    grids = inputs["image_grid_thw"]
    assert grids.shape[0] == inputs["prompt_ids"].shape[0]  # one image per completion row
    for grid, tokens in zip(grids, image_token_counts(trainer, inputs)):
        t, h, w = grid.tolist()
        assert min_pixels <= t * h * w * patch * patch <= max_pixels
        assert tokens == grid.prod().item() // merged(processor), "image tokens disagree with image_grid_thw"
    # The pixels the policy saw are exactly our one resize of each image (the processor did not resize again).
    expected = {prepare_image(im, min_pixels, max_pixels, factor=factor).size for im in (large, tiny)}
    seen = {(w * patch, h * patch) for _, h, w in grids.tolist()}
    assert seen == expected
    assert all(w % factor == 0 and h % factor == 0 for w, h in seen)  # the family's own grid, not another's
    assert {(h, w) for w, h in expected} == {
        smart_resize(1500, 2000, min_pixels, max_pixels, factor=factor),
        smart_resize(30, 30, min_pixels, max_pixels, factor=factor),
    }


def test_dicom_and_png_paths_train(tiny_vlm, processor, tmp_path):
    png = tmp_path / "slice.png"
    picture(300, 200).save(png)
    ct, mr = get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")
    rows = [make_row("ct-dicom", ct, "CT"), make_row("mr-dicom", mr, "MRI"), make_row("png", str(png))]
    trainer = make_trainer(tiny_vlm, processor, tmp_path, rows, [low_token_share], per_device_train_batch_size=G * 3)
    trainer.train()

    (_, inputs), *_ = trainer.losses
    bounds = trainer.args.min_pixels, trainer.args.max_pixels
    patch = patch_of(processor)
    expected = {prepare_image(path, *bounds, factor=trainer.image_factor).size for path in (ct, mr, str(png))}
    assert {(w * patch, h * patch) for _, h, w in inputs["image_grid_thw"].tolist()} == expected
    assert image_token_counts(trainer, inputs) == (inputs["image_grid_thw"].prod(dim=1) // 4).tolist()


def test_each_row_is_converted_once_not_once_per_generation(tiny_vlm, processor, tmp_path, monkeypatch):
    import medvlm_trl.trainer as trainer_module

    calls = []

    def counting(value, **kwargs):
        calls.append(kwargs["row_id"])
        return prepare_image(value, **kwargs)

    monkeypatch.setattr(trainer_module, "prepare_image", counting)
    trainer = make_trainer(tiny_vlm, processor, tmp_path, two_rows(), [low_token_share])
    trainer.train()
    assert sorted(calls) == ["ct-1", "mri-1"]


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_bad_image_names_the_row(tiny_vlm, processor, tmp_path, problem):
    path = tmp_path / "scan.png"
    if problem == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n this is not image data")
    rows = [make_row("good-row", picture(64, 64)), make_row("bad-row-7", str(path))]
    # Keep the good row's image a path too: one column cannot mix images and strings.
    good = tmp_path / "good.png"
    picture(64, 64).save(good)
    rows[0]["image"] = str(good)
    trainer = make_trainer(tiny_vlm, processor, tmp_path, rows, [low_token_share])
    with pytest.raises(ImageLoadError, match="row 'bad-row-7'"):
        trainer.train()


# ------------------------------------------------------------------------------------------------------------ logs


def modality_reward(completions, modality, **kwargs):
    return [1.0 if m == "MRI" else 0.25 for m in modality]


def test_rewards_are_logged_per_modality_and_with_each_completion(family_vlm, family_processor, tmp_path):
    trainer = make_trainer(
        family_vlm,
        family_processor,
        tmp_path,
        two_rows(),
        [modality_reward, low_token_share],
        reward_weights=[2.0, 0.0],  # weighted as TRL weights its `reward`
        log_completions=True,
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["reward_by_modality/MRI/mean"] == pytest.approx(2.0)
    assert logged["reward_by_modality/CT/mean"] == pytest.approx(0.5)
    assert "rewards/modality_reward/mean" in logged  # TRL's per-reward mean is still there

    table = pd.read_parquet(tmp_path / "out" / "completions" / "completions_00001.parquet")
    assert len(table) == 2 * G
    assert sorted(set(table["id"])) == ["ct-1", "mri-1"]
    by_modality = table.groupby("modality")["modality_reward"].unique()
    assert by_modality["MRI"].tolist() == [1.0] and by_modality["CT"].tolist() == [0.25]
    assert (table["id"].str.startswith("mri") == (table["modality"] == "MRI")).all()
