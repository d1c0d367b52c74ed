"""DPO pairs (RL-MedVQA study, DPO row of Table 1): chosen is the correct letter, rejected a wrong one, drawn with a
seed from the item alone; and TRL's vision preference collator sees them as such."""

from collections import Counter

import pytest

from medvlm_trl.data.prompts import LETTERS
from medvlm_trl.dpo import DPOScriptArguments, preference_example, rejected_letter
from medvlm_trl.tiny import TINY_MAX_PIXELS


def _row(i, n_options=4, answer="B"):
    return {
        "id": f"q{i}",
        "question": "Which imaging modality produced this image?",
        "options": ["CT", "MRI", "X-ray", "Ultrasound", "PET", "SPECT"][:n_options],
        "answer": answer,
    }


@pytest.mark.parametrize("n_options", [2, 3, 4, 5, 6])
def test_rejected_is_a_wrong_option_of_the_row(n_options):
    for i in range(50):
        answer = LETTERS[i % n_options]
        letter = rejected_letter(_row(i, n_options, answer), seed=0)
        assert letter != answer
        assert letter in LETTERS[:n_options]


def test_chosen_is_the_correct_letter_and_rejected_is_not():
    example = preference_example(_row(7, answer="C"), template="simple", seed=3)
    assert example["chosen"] == [{"role": "assistant", "content": "C"}]
    assert example["rejected"][0]["role"] == "assistant"
    assert example["rejected"][0]["content"] in {"A", "B", "D"}
    # The prompt is the simple template's, with the image placeholder first.
    assert example["prompt"][0]["content"][0] == {"type": "image"}
    assert "single-letter choice" in example["prompt"][0]["content"][1]["text"]


def test_pairs_are_seeded_per_item_not_per_order():
    rows = [_row(i) for i in range(40)]
    first = [rejected_letter(r, seed=11) for r in rows]
    again = [rejected_letter(r, seed=11) for r in reversed(rows)][::-1]
    assert first == again  # same seed, any order: same pairs
    assert first[5:] == [rejected_letter(r, seed=11) for r in rows[5:]]  # dropping rows does not move the others
    other_seed = [rejected_letter(r, seed=12) for r in rows]
    assert other_seed != first  # the seed matters


def test_rejected_draw_covers_every_wrong_option():
    counts = Counter(rejected_letter(_row(i, answer="A"), seed=0) for i in range(300))
    assert set(counts) == {"B", "C", "D"}
    assert min(counts.values()) > 60  # roughly uniform: 100 expected each


def test_a_row_without_a_wrong_option_is_named():
    row = {"id": "bad-1", "options": ["only"], "answer": "A", "question": "?"}
    with pytest.raises(ValueError, match="bad-1"):
        rejected_letter(row, seed=0)


def test_collated_pair_has_chosen_and_rejected_completions(tiny_vlm):
    """TRL's `DataCollatorForVisionPreference` gets the pair in the right order: chosen rows first, then rejected."""
    from transformers import AutoProcessor
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    from medvlm_trl.data.sample import load_sample
    from medvlm_trl.sft import build_dataset

    rows = load_sample("train")[:2]
    args = DPOScriptArguments(max_pixels=TINY_MAX_PIXELS, rejected_seed=5)
    dataset = build_dataset(rows, lambda r: preference_example(r, "simple", args.rejected_seed), args, factor=28)
    processor = AutoProcessor.from_pretrained(tiny_vlm)
    batch = DataCollatorForVisionPreference(processor)([dict(dataset[i]) for i in range(2)])
    tok = processor.tokenizer
    ids, mask = batch["input_ids"], batch["completion_mask"]
    completions = [tok.decode(ids[i][mask[i] == 1]) for i in range(4)]
    for i, row in enumerate(rows):
        assert completions[i].startswith(row["answer"])  # chosen
        rejected = rejected_letter(row, 5)
        assert rejected != row["answer"]
        assert completions[i + 2].startswith(rejected)  # rejected
    # The image goes with both halves of each pair.
    assert batch["image_grid_thw"].shape[0] == 4


def test_dpo_training_prefers_the_correct_letter(tiny_vlm, tmp_path):
    """A few DPO steps on the same two pairs: the policy's implicit reward margin (chosen over rejected, against the
    frozen initial model) turns positive, so the pairs point the right way through TRL's DPOTrainer."""
    from pathlib import Path

    import yaml
    from transformers import AutoProcessor

    from medvlm_trl import reproduce
    from medvlm_trl.dpo import make_dpo_parser, train
    from medvlm_trl.model_card import read_model_card

    source = Path(__file__).resolve().parents[2] / "recipes" / "rl_medvqa" / "dpo_qwen2vl_2b_instruct.yaml"
    data = reproduce.apply_overrides(
        yaml.safe_load(source.read_text()), reproduce.TINY_TRAIN_OVERRIDES, reproduce.training_keys("dpo")
    )
    data.update(output_dir=str(tmp_path / "out"), max_train_samples=2, max_steps=4, learning_rate=1e-3)
    data.update(model_name_or_path=tiny_vlm, dataset_name="sample")  # the random tiny model on the sample set
    data.update(min_pixels=6272, max_pixels=25088)  # not the tiny processor's own bounds (3136..50176)
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(yaml.safe_dump(data))
    script_args, training_args, model_args = make_dpo_parser().parse_args_and_config(["--config", str(recipe)])
    trainer = train(script_args, training_args, model_args, recipe=str(recipe))
    margins = [log["rewards/margins"] for log in trainer.state.log_history if "rewards/margins" in log]
    assert len(margins) == 4
    assert margins[0] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert margins[-1] > 0.01
    assert read_model_card(tmp_path / "out")["method"] == "dpo"
    size = AutoProcessor.from_pretrained(tmp_path / "out").image_processor.size  # the run's bounds are saved
    assert (size.shortest_edge, size.longest_edge) == (6272, 25088)
