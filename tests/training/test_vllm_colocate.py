"""vLLM colocated rollouts of every Qwen VL family start from the prompt the policy scores (huggingface/trl#6294,
#6401, #4488).

No vLLM runs here: `RecordingQwenVLEngine` stands in for `vllm.LLM`. It is injected where TRL builds its colocated
engine (`trl.generation.vllm_generation.LLM`), so the real `GRPOTrainer` path runs on CPU with `use_vllm=True,
vllm_mode="colocate"`. It records every request (prompt ids, images and their sizes, sampling parameters) and expands
image placeholders by vLLM's own rule, `expand_like_vllm` below, sizing each image with the processor saved in the
model folder and counting its tokens with that processor's merge size, as vLLM does; so on Qwen3-VL and Qwen3.5 it
expands on their 32-pixel grid. `tests/training/test_vllm_engine.py` checks that rule against the real engine (Qwen2-VL) where
vLLM is installed.

The mixed-size batch is where #6401 showed up: the images below take 4, 12, 24 and 21 image tokens on every family.
"""

import math
import os
import random
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
from trl import GRPOConfig, GRPOTrainer

from medvlm_trl import MedVLMGRPOConfig, MedVLMGRPOTrainer
from medvlm_trl.data.prompts import build_prompt
from medvlm_trl.vllm_compat import (
    ColocatedVLLMPromptGuard,
    RolloutPromptMismatchError,
    VLLMColocatePromptMixin,
    collapse_image_placeholders,
    image_token_runs,
)

G = 2  # generations per prompt
# Four sizes in image tokens (width x height), inside the tiny processors' bounds (4 to 64 tokens): 4, 12, 24 and 21
# image tokens; in pixels, multiples of each family's factor (28 or 32).
MIXED_TOKENS = [(2, 2), (4, 3), (6, 4), (3, 7)]
IMG = 7  # an arbitrary image token id for the pure-function tests


def mixed_sizes(factor):
    return [(w * factor, h * factor) for w, h in MIXED_TOKENS]


# ------------------------------------------------------------------------------------------- vLLM's rule and engine


def expand_like_vllm(prompt_ids, image_token_id, tokens_per_image):
    """The Qwen VL families' placeholder expansion as vLLM applies it to a token prompt with images.

    Written from vLLM v0.31.0 (the release TRL 1.16 caps its support at; vllm-project/vllm, read at commit
    002d181a55a03803d7d69547846630069d2378b8, unchanged there): `vllm/model_executor/models/qwen2_vl.py`,
    `Qwen2VLMultiModalProcessor._get_prompt_updates` makes one `PromptReplacement` per image whose target is the single
    token `[image_token_id]` and whose replacement is `[image_token_id] * (grid_t * grid_h * grid_w // merge_size**2)`;
    `vllm/multimodal/processing/processor.py`, `_plan_prompt_updates_with` (via `_apply_prompt_updates`) takes the
    images in order, each matching the first target occurrence at or after the end of the previous match, and
    `_validate_mm_placeholders` raises when an image finds no placeholder. The prompt is always rewritten this way
    (`BaseMultiModalProcessor.apply`): vLLM does not look for an already-expanded run. Qwen2.5-VL's processor
    subclasses Qwen2-VL's; vLLM's Qwen3-VL processor (`qwen3_vl.py`, `Qwen3VLMultiModalProcessor._get_prompt_updates`,
    read at commit 002d7b939754b844a3832dd7fbf9e5fd0c0e9f1b), which Qwen3.5's reuses, has the same image rule, with
    its own merge size: the caller passes `tokens_per_image` from the model folder's processor.
    """
    out, cursor = [], 0
    for item, count in enumerate(tokens_per_image):
        try:
            at = prompt_ids.index(image_token_id, cursor)
        except ValueError:
            raise RuntimeError(
                f"Expected there to be {len(tokens_per_image)} prompt placeholders corresponding to "
                f"{len(tokens_per_image)} image items, but instead found {item} prompt placeholders!"
            ) from None
        out += prompt_ids[cursor:at] + [image_token_id] * count
        cursor = at + 1
    return out + prompt_ids[cursor:]


@dataclass
class Request:
    sent: list  # the prompt ids the trainer handed to vLLM
    prompt: list  # the ids vLLM generates from (after its placeholder expansion)
    sizes: list  # (width, height) of each image sent
    grids: list  # (t, h, w) patch grid vLLM's processor gives each image
    n: int  # completions requested for this prompt


class RecordingQwenVLEngine:
    """Test double of `vllm.LLM` for a Qwen VL checkpoint: records requests, expands placeholders as vLLM does.

    Completions are random text tokens (never an image token), with one log-probability each, in the shape of vLLM's
    `RequestOutput` that TRL reads (`prompt_token_ids`, `outputs[i].token_ids`, `outputs[i].logprobs`).
    """

    def __init__(self, model, **engine_kwargs):
        self.model = model
        self.engine_kwargs = engine_kwargs
        # Like vLLM, size images with the processor saved in the model folder, not the trainer's.
        self.processor = AutoProcessor.from_pretrained(model)
        self.merge = self.processor.image_processor.merge_size  # 2x2 patches an image token, on every Qwen family
        self.image_token_id = AutoConfig.from_pretrained(model).image_token_id
        tokenizer = self.processor.tokenizer
        self.text_token_ids = [
            i for i in range(len(tokenizer)) if not tokenizer.convert_ids_to_tokens(i).startswith("<|")
        ]
        self.rng = random.Random(engine_kwargs.get("seed", 0))
        self.requests: list[Request] = []
        self.loaded_weights: list[str] = []
        runner = SimpleNamespace(model=SimpleNamespace(load_weights=self._load_weights))
        self.llm_engine = SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner)),
            model_config=SimpleNamespace(max_model_len=4096),
        )

    def _load_weights(self, weights):
        self.loaded_weights.extend(name for name, _ in weights)

    def reset_prefix_cache(self):
        return True

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        outputs = []
        for request in prompts:
            ids = list(request["prompt_token_ids"])
            images = (request.get("multi_modal_data") or {}).get("image")
            images = [] if images is None else images if isinstance(images, list) else [images]
            grids = [
                tuple(self.processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0].tolist())
                for image in images
            ]
            prompt = expand_like_vllm(ids, self.image_token_id, [t * h * w // self.merge**2 for t, h, w in grids])
            n = sampling_params.n
            self.requests.append(Request(ids, prompt, [image.size for image in images], grids, n))
            completions = []
            for _ in range(n):
                tokens = [self.rng.choice(self.text_token_ids) for _ in range(sampling_params.max_tokens)]
                logprob = -math.log(len(self.text_token_ids))
                completions.append(
                    SimpleNamespace(
                        token_ids=tokens,
                        logprobs=[{t: SimpleNamespace(logprob=logprob, rank=1)} for t in tokens],
                    )
                )
            outputs.append(SimpleNamespace(prompt_token_ids=prompt, outputs=completions))
        return outputs


class RecordedSamplingParams(SimpleNamespace):
    """Stands in for `vllm.SamplingParams`: keeps the keyword arguments TRL builds it with."""


@pytest.fixture
def fake_vllm(monkeypatch):
    """Patch the names TRL's colocate mode uses (`trl/generation/vllm_generation.py`) and collect the engines built."""
    import trl.generation.vllm_generation as vllm_generation

    engines = []

    def make_engine(**kwargs):
        engine = RecordingQwenVLEngine(**kwargs)
        engines.append(engine)
        return engine

    monkeypatch.setattr(vllm_generation, "is_vllm_available", lambda *a, **k: True)
    monkeypatch.setattr(vllm_generation, "LLM", make_engine, raising=False)
    monkeypatch.setattr(vllm_generation, "SamplingParams", RecordedSamplingParams, raising=False)
    # Colocate mode writes the distributed rendezvous variables into os.environ; put them back afterwards.
    keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    saved = {key: os.environ.get(key) for key in keys}
    yield engines
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# ------------------------------------------------------------------------------------------------ trainers under test


class PolicyRecorder:
    """Records, per generation batch, the prompt ids and image grids the policy scores."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mask = output["prompt_mask"].bool()
        prompts = [ids[keep].tolist() for ids, keep in zip(output["prompt_ids"], mask)]
        grids = [tuple(g) for g in output["image_grid_thw"].tolist()]
        per_row, start = [], 0
        for count in output["num_images"]:
            per_row.append(grids[start : start + count])
            start += count
        self.scored.append({"prompts": prompts, "grids": per_row, "ids": [row.get("id") for row in inputs]})
        return output


class PlainTRL(PolicyRecorder, GRPOTrainer):
    scored: list


class Guarded(PolicyRecorder, VLLMColocatePromptMixin, GRPOTrainer):
    scored: list


class MedVLM(PolicyRecorder, MedVLMGRPOTrainer):
    scored: list


XFAIL_TRL = pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="TRL 1.16 sends processor-expanded ids; vLLM expands them again (huggingface/trl#6294)",
)
TRAINERS = [
    pytest.param(PlainTRL, marks=XFAIL_TRL, id="trl-1.16"),
    pytest.param(Guarded, id="mixin"),
    pytest.param(MedVLM, id="MedVLMGRPOTrainer"),
]


def constant_reward(completions, **kwargs):
    return [0.0] * len(completions)


def picture(width, height, shade):
    image = Image.linear_gradient("L").resize((width, height))
    return Image.eval(image, lambda v: (v + shade) % 256).convert("RGB")


def rows_with_mixed_sizes(factor):
    question, options = "Which imaging modality is shown?", ["CT", "MRI", "X-ray"]
    return [
        {"id": f"row-{w}x{h}", "image": picture(w, h, 40 * i), "prompt": build_prompt(question, options, "r1")}
        for i, (w, h) in enumerate(mixed_sizes(factor))
    ]


def rows_with_two_images(factor):
    question, options = "Are these two slices from the same modality?", ["Yes", "No"]
    sizes = mixed_sizes(factor)
    pairs = [(sizes[0], sizes[2]), (sizes[1], sizes[3])]
    return [
        {
            "id": f"pair-{i}",
            "images": [picture(*a, 30 * i), picture(*b, 30 * i + 90)],
            "prompt": build_prompt(question, options, "r1", num_images=2),
        }
        for i, (a, b) in enumerate(pairs)
    ]


def make_trainer(cls, tiny_vlm, tmp_path, rows, **overrides):
    settings = dict(
        output_dir=str(tmp_path / "out"),
        use_vllm=True,
        vllm_mode="colocate",
        per_device_train_batch_size=len(rows) * G,  # every row of the batch in one generation call
        num_generations=G,
        max_completion_length=6,
        max_steps=1,
        bf16=False,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
    )
    settings.update(overrides)
    config_cls = MedVLMGRPOConfig if issubclass(cls, MedVLMGRPOTrainer) else GRPOConfig
    trainer = cls(
        model=AutoModelForImageTextToText.from_pretrained(tiny_vlm, dtype=torch.float32),
        reward_funcs=[constant_reward],
        args=config_cls(**settings),
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoProcessor.from_pretrained(tiny_vlm, padding_side="left"),
    )
    trainer.scored = []
    return trainer


def assert_rollouts_match_policy(trainer, engine):
    """For every row: vLLM generated from exactly the ids the policy scored, with the same image tokens per image."""
    (batch,) = trainer.scored
    assert len(engine.requests) == len(batch["prompts"])
    for row_id, request, scored, grids in zip(batch["ids"], engine.requests, batch["prompts"], batch["grids"]):
        policy_tokens = [t * h * w // engine.merge**2 for t, h, w in grids]
        assert image_token_runs(scored, engine.image_token_id) == policy_tokens, row_id
        assert image_token_runs(request.prompt, engine.image_token_id) == policy_tokens, row_id
        assert request.grids == grids, row_id
        assert request.prompt == scored, row_id


# ----------------------------------------------------------------------------------------------- the pure functions


def test_runs_and_collapse_keep_every_other_token():
    ids = [1, 2, IMG, IMG, IMG, 3, 4, IMG, 5, IMG, IMG]
    assert image_token_runs(ids, IMG) == [3, 1, 2]
    assert collapse_image_placeholders(ids, IMG) == [1, 2, IMG, 3, 4, IMG, 5, IMG]
    assert collapse_image_placeholders([1, 2, 3], IMG) == [1, 2, 3]
    assert image_token_runs([], IMG) == []


def test_vllm_rule_expands_an_expanded_prompt_again():
    """#6294: one image of K tokens becomes 2K - 1 image tokens; #4488: a second image's run starts inside the
    first's, so its features land on the wrong tokens."""
    one = [1, IMG, IMG, IMG, IMG, 2]
    assert image_token_runs(expand_like_vllm(one, IMG, [4]), IMG) == [7]
    two = [1, IMG, IMG, IMG, IMG, 2, IMG, IMG, 3]  # 4 and 2 tokens
    got = expand_like_vllm(two, IMG, [4, 2])
    assert got[:9] == [1] + [IMG] * 4 + [IMG] * 2 + [IMG, IMG]  # image 2 placed right after image 1, in run 1
    assert image_token_runs(got, IMG) == [4 + 2 + 2, 2]


def test_vllm_rule_raises_when_an_image_has_no_placeholder():
    with pytest.raises(RuntimeError, match="Expected there to be 2 prompt placeholders"):
        expand_like_vllm([1, IMG, 2], IMG, [4, 4])


@given(
    st.lists(
        st.one_of(st.integers(0, 6), st.integers(1, 40).map(lambda k: [IMG] * k)),
        max_size=12,
    )
)
def test_collapsed_prompt_expands_back_to_the_processor_prompt(parts):
    """What the guard sends, expanded by vLLM with the policy's token counts, is exactly the policy's prompt."""
    ids = []
    for part in parts:
        ids.extend(part if isinstance(part, list) else [part])
    runs = image_token_runs(ids, IMG)
    collapsed = collapse_image_placeholders(ids, IMG)
    assert image_token_runs(collapsed, IMG) == [1] * len(runs)
    assert expand_like_vllm(collapsed, IMG, runs) == ids
    if any(run > 1 for run in runs):  # and what TRL 1.16 sends is not
        assert expand_like_vllm(ids, IMG, runs) != ids


class FakeOutput(SimpleNamespace):
    pass


class EchoEngine:
    """An engine that expands placeholders to fixed counts (the double's rule, without a model folder)."""

    def __init__(self, counts):
        self.counts, self.sent = counts, []
        self.llm_engine = "engine internals"

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        self.sent.extend(prompts)
        return [
            FakeOutput(
                prompt_token_ids=expand_like_vllm(
                    p["prompt_token_ids"], IMG, self.counts if p.get("multi_modal_data") else []
                ),
                outputs=[],
            )
            for p in prompts
        ]

    def sleep(self, level):
        return f"slept {level}"


def test_guard_sends_one_placeholder_per_image_and_forwards_the_rest():
    engine = EchoEngine(counts=[3])
    guard = ColocatedVLLMPromptGuard(engine, IMG)
    prompt = [1, IMG, IMG, IMG, 2]
    image = Image.new("RGB", (84, 28))
    out = guard.generate(
        [{"prompt_token_ids": prompt, "multi_modal_data": {"image": image}}, {"prompt_token_ids": [5]}]
    )
    assert engine.sent[0]["prompt_token_ids"] == [1, IMG, 2]
    assert engine.sent[0]["multi_modal_data"]["image"] is image  # the trainer's resized image, untouched
    assert engine.sent[1] == {"prompt_token_ids": [5]}  # text-only requests pass as they are
    assert out[0].prompt_token_ids == prompt
    assert guard.llm_engine == "engine internals" and guard.sleep(level=2) == "slept 2"


def test_guard_names_the_row_when_vllm_sizes_an_image_differently():
    guard = ColocatedVLLMPromptGuard(EchoEngine(counts=[2]), IMG)
    guard.row_ids = ["mri-7"]
    request = {"prompt_token_ids": [1, IMG, IMG, IMG, 2], "multi_modal_data": {"image": Image.new("RGB", (84, 28))}}
    with pytest.raises(RolloutPromptMismatchError) as err:
        guard.generate([request])
    message = str(err.value)
    assert "row 'mri-7'" in message and "policy [3], vLLM [2]" in message and "(84, 28)" in message
    assert "max_pixels" in message


def test_guard_without_collapse_still_refuses_a_double_expansion():
    """For a model outside the Qwen2-VL family the prompt is not rewritten, but TRL's corruption is still caught."""
    engine = EchoEngine(counts=[3])
    guard = ColocatedVLLMPromptGuard(engine, IMG, collapse=False)
    request = {"prompt_token_ids": [1, IMG, IMG, IMG, 2], "multi_modal_data": {"image": Image.new("RGB", (84, 28))}}
    with pytest.raises(RolloutPromptMismatchError, match="#6294") as err:
        guard.generate([request])
    assert engine.sent[0]["prompt_token_ids"] == [1, IMG, IMG, IMG, 2]
    assert "policy [3], vLLM [5]" in str(err.value)


# ------------------------------------------------------------------------------- the real GRPOTrainer, colocated


@pytest.mark.parametrize("trainer_cls", TRAINERS)
def test_rollouts_start_from_the_scored_prompt_with_mixed_image_sizes(
    trainer_cls, fake_vllm, family_vlm, family_factor, tmp_path
):
    """#6401: four image sizes in one generation batch; each rollout's prompt is the policy's, token for token."""
    trainer = make_trainer(trainer_cls, family_vlm, tmp_path, rows_with_mixed_sizes(family_factor))
    trainer.train()
    (engine,) = fake_vllm
    # TRL's colocate contract, which the comparison relies on: G requests of n=1 per row, in the batch's order.
    assert [request.n for request in engine.requests] == [1] * len(MIXED_TOKENS) * G
    sent_sizes = sorted(size for request in engine.requests for size in request.sizes)
    assert sent_sizes == sorted(mixed_sizes(family_factor) * G)
    # The weight sync went through to the engine before generation.
    assert any("visual" in name for name in engine.loaded_weights)
    assert_rollouts_match_policy(trainer, engine)


@pytest.mark.parametrize("trainer_cls", TRAINERS)
def test_rollouts_of_two_image_rows_place_each_image_on_its_own_tokens(trainer_cls, fake_vllm, tiny_vlm, tmp_path):
    """#4488: rows with two images of different sizes (Qwen2-VL; every family below, with our trainer)."""
    check_two_image_rows(trainer_cls, fake_vllm, tiny_vlm, 28, tmp_path)


def test_rollouts_of_two_image_rows_on_every_family(fake_vllm, family_vlm, family_factor, tmp_path):
    check_two_image_rows(MedVLM, fake_vllm, family_vlm, family_factor, tmp_path)


def check_two_image_rows(trainer_cls, fake_vllm, model_path, factor, tmp_path):
    trainer = make_trainer(trainer_cls, model_path, tmp_path, rows_with_two_images(factor))
    trainer.train()
    (engine,) = fake_vllm
    assert all(len(request.sizes) == 2 for request in engine.requests)
    assert_rollouts_match_policy(trainer, engine)


def test_trl_sends_expanded_ids_and_vllm_doubles_the_image_tokens(fake_vllm, family_vlm, family_factor, tmp_path):
    """What TRL 1.16 does, measured: the contract the guard is written against. If this changes (a TRL release with
    the fix of #6294), the guard must be revisited, since it would then receive ids that are already un-expanded."""
    trainer = make_trainer(PlainTRL, family_vlm, tmp_path, rows_with_mixed_sizes(family_factor))
    trainer.train()
    (engine,) = fake_vllm
    (batch,) = trainer.scored
    for request, scored in zip(engine.requests, batch["prompts"]):
        assert request.sent == scored  # the processor-expanded ids go to vLLM as they are
        (k,) = image_token_runs(scored, engine.image_token_id)
        assert image_token_runs(request.prompt, engine.image_token_id) == [2 * k - 1]


def test_guarded_trainer_sends_the_chat_template_prompt(fake_vllm, family_vlm, family_factor, tmp_path):
    """With the guard, vLLM receives one `<|image_pad|>` between `<|vision_start|>` and `<|vision_end|>` per image,
    and otherwise the policy's tokens."""
    trainer = make_trainer(MedVLM, family_vlm, tmp_path, rows_with_two_images(family_factor))
    trainer.train()
    (engine,) = fake_vllm
    (batch,) = trainer.scored
    tokenizer = engine.processor.tokenizer
    block = tokenizer.convert_tokens_to_ids(["<|vision_start|>", "<|image_pad|>", "<|vision_end|>"])
    for request, scored in zip(engine.requests, batch["prompts"]):
        assert request.sent == collapse_image_placeholders(scored, engine.image_token_id)
        starts = [i for i, t in enumerate(request.sent) if t == block[0]]
        assert len(starts) == 2 and all(request.sent[i : i + 3] == block for i in starts)


def test_a_row_vllm_would_resize_stops_training_with_its_id(fake_vllm, family_vlm, family_factor, tmp_path):
    """The trainer allows 256 image tokens, the model folder's processor (which vLLM uses) 64: an image of 80 tokens
    would be shrunk by vLLM only. Training stops at the first rollout, naming the row."""
    question, options = "Which imaging modality is shown?", ["CT", "MRI"]
    f = family_factor
    rows = [{"id": "big-ct", "image": picture(10 * f, 8 * f, 0), "prompt": build_prompt(question, options, "r1")}]
    trainer = make_trainer(MedVLM, family_vlm, tmp_path, rows, max_pixels=256 * f * f)
    with pytest.raises(RolloutPromptMismatchError, match=r"row 'big-ct'.*policy \[80\], vLLM \[\d+\]"):
        trainer.train()


def test_guard_is_off_without_colocated_vllm(tiny_vlm, tmp_path):
    trainer = make_trainer(MedVLM, tiny_vlm, tmp_path, rows_with_mixed_sizes(28), use_vllm=False)
    assert trainer._vllm_prompt_guard is None
    assert not hasattr(trainer, "vllm_generation")


def test_medvlm_trainer_includes_the_mixin():
    assert issubclass(MedVLMGRPOTrainer, VLLMColocatePromptMixin)
    mro = MedVLMGRPOTrainer.__mro__
    assert mro.index(VLLMColocatePromptMixin) < mro.index(GRPOTrainer)
