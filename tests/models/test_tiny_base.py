"""The tiny base model of the phantom world: seeded build, writes the r1 format when sampled, answers near chance."""

import random
import re

import pytest
import torch

from medvlm_trl.data.phantom import make_items
from medvlm_trl.data.prompts import LETTERS, build_prompt
from medvlm_trl.eval.scoring import random_guess_accuracy, score_strict
from medvlm_trl.rewards import format_reward
from medvlm_trl.tiny_base import (
    build_tiny_base,
    cold_start_target,
    finding_tokens,
    option_tokens,
    pretrain_example,
)

NAMED = re.compile(r"Finding: (.+), option ([A-F])\.</think><answer>([A-F])</answer>")


def test_cold_start_targets_name_a_random_option_and_answer_its_letter():
    row = make_items("coldstart", "MRI", 1, balanced=False)[0]
    rng = random.Random(0)
    targets = [cold_start_target(row, rng) for _ in range(200)]
    assert all(format_reward([t])[0] == 1.0 for t in targets)
    named = [NAMED.search(t).groups() for t in targets]
    assert {letter for _, letter, _ in named} == set(LETTERS[: len(row["options"])])  # the target ignores the image
    for text, letter, answered in named:
        assert answered == letter and row["options"][LETTERS.index(letter)] == text


def test_the_text_only_task_names_an_option_of_its_list_and_answers_its_letter():
    rng = random.Random(0)
    for _ in range(100):
        prompt, target = pretrain_example(rng)
        lines = prompt.strip().split("\n")[1:]
        assert 2 <= len(lines) <= 6 and "<image>" not in prompt and "Your task" not in prompt
        text, letter, answered = NAMED.search(target).groups()
        assert answered == letter and f"{letter}) {text}" in lines


def test_the_build_is_seeded(tmp_path):
    a = build_tiny_base(tmp_path / "a", steps=2, pretrain_steps=2)
    b = build_tiny_base(tmp_path / "b", steps=2, pretrain_steps=2)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    from transformers import AutoProcessor

    tokenizer = AutoProcessor.from_pretrained(a).tokenizer
    assert tokenizer.tokenize("A) small\nB) upper left") == ["A) small", "Ċ", "B) upper left"]
    assert len(option_tokens()) == len(set(option_tokens())) == 6 * 13
    assert len(finding_tokens()) == len(set(finding_tokens())) == 6 * 13
    # the tags are tokens of their own, so the answer letter is the letter's token, not glued to `>` (`>B`)
    assert tokenizer.tokenize("<answer>B</answer>") == ["<answer>", "B", "</answer>"]
    assert "large, option B" in tokenizer.tokenize("<think>Finding: large, option B.</think>")


def _sample(model, processor, rows, do_sample):
    texts = [
        processor.apply_chat_template(build_prompt(r["question"], r["options"], "r1"), add_generation_prompt=True)
        for r in rows
    ]
    enc = processor(text=texts, images=[r["image"] for r in rows], return_tensors="pt", padding=True)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=24, do_sample=do_sample, temperature=1.0, top_k=0, top_p=1.0)
    return processor.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.mark.slow
def test_the_base_writes_the_format_when_sampled_and_answers_near_chance():
    """Measured 2026-12-02 on the build of seed 4321 (300 held-out MRI test rows): sampled format 0.997, greedy format
    1.00, the answered letter that of the named option in 100% of greedy answers, greedy strict accuracy 33.0% against
    a random guess of 35.3% (CT 35.0%, X-ray 33.0%, each against 35.3%). The thresholds
    sit between those figures and what version 1 of the build gave (the answered letter was the named option's in
    44% of greedy answers)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from medvlm_trl.tiny_base import tiny_base_path

    path = tiny_base_path()
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    processor.tokenizer.padding_side = "left"
    rows = make_items("test", "MRI", 300)
    sampled = [c for i in range(0, 300, 100) for c in _sample(model, processor, rows[i : i + 100], True)]
    assert sum(format_reward(sampled)) / len(sampled) >= 0.85
    greedy = [c for i in range(0, 300, 100) for c in _sample(model, processor, rows[i : i + 100], False)]
    accuracy = 100 * sum(score_strict(c, r["answer"]) for c, r in zip(greedy, rows)) / len(rows)
    assert abs(accuracy - random_guess_accuracy(rows, by=None)["all"]) <= 10
    named = [NAMED.search(c) for c in greedy]
    consistent = sum(m is not None and m.group(2) == m.group(3) for m in named) / len(greedy)
    assert consistent >= 0.9  # it answers the letter of the option its reasoning names
