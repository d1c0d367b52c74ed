"""The tiny base model of the phantom world: seeded build, writes the r1 format when sampled, answers near chance."""

import random
import re
from collections import Counter

import pytest
import torch

from medvlm_trl.data.phantom import make_items
from medvlm_trl.data.prompts import LETTERS, build_prompt
from medvlm_trl.eval.scoring import random_guess_accuracy, score_strict
from medvlm_trl.rewards import format_reward
from medvlm_trl.tiny_base import (
    CHOICE_INDEX,
    FINDING_TOKEN,
    THINK_TEMPLATE,
    build_tiny_base,
    cold_start_target,
    finding_tokens,
    option_tokens,
    perception_target,
    pretrain_example,
    train_cold_start,
)

NAMED = re.compile(r"Finding: (.+?)\. (.+), option ([A-F])\.</think><answer>([A-F])</answer>")


def test_cold_start_targets_name_the_finding_then_choose_a_random_option_and_answer_its_letter():
    row = make_items("coldstart", "MRI", 1, balanced=False)[0]
    rng = random.Random(0)
    targets = [cold_start_target(row, rng) for _ in range(200)]
    assert all(format_reward([t])[0] == 1.0 for t in targets)
    named = [NAMED.search(t).groups() for t in targets]
    assert {finding for finding, _, _, _ in named} == {row["finding"]}  # the perception: the image's finding
    assert {letter for _, _, letter, _ in named} == set(LETTERS[: len(row["options"])])  # the choice ignores it
    for _, text, letter, answered in named:
        assert answered == letter and row["options"][LETTERS.index(letter)] == text
    assert perception_target(row) == f"<think>Finding: {row['finding']}."


def test_under_the_simple_prompt_the_cold_start_target_is_the_bare_random_letter():
    """`bench/study_prompt_probe.py` teaches the simple prompt's bare letter: the same draw as the r1 target's."""
    row = make_items("coldstart", "MRI", 1, balanced=False)[0]
    simple = [cold_start_target(row, random.Random(seed), "simple") for seed in range(200)]
    r1 = [NAMED.search(cold_start_target(row, random.Random(seed))).group(4) for seed in range(200)]
    assert simple == r1 and set(simple) == set(LETTERS[: len(row["options"])])


def test_the_cold_start_takes_turns_between_prompts_and_refuses_a_target_whose_choice_it_cannot_find(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = build_tiny_base(tmp_path / "m", steps=0, pretrain_steps=0, perception_steps=0)
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    processor.tokenizer.padding_side = "right"
    rows = make_items("coldstart", "MRI", 4)
    seen = []

    def target(row, template):
        seen.append(template)
        return cold_start_target(row, random.Random(0), template)

    settings = dict(steps=1, batch_size=4, learning_rate=1e-4, warmup_steps=1, uniform_choice=True)
    train_cold_start(model, processor, rows, target, templates=("r1", "simple"), **settings)
    assert seen == ["r1", "simple", "r1", "simple"]
    # a reasoning target under the simple prompt: its first token is `<think>`, not one of the row's letters
    with pytest.raises(ValueError, match=rf"cold start row {rows[0]['id']}: token 0 of '<think>"):
        train_cold_start(
            model,
            processor,
            rows,
            lambda r, _t: cold_start_target(r, random.Random(0)),
            templates=("simple",),
            **settings,
        )


def test_the_text_only_task_chooses_the_option_it_names_and_answers_its_letter():
    rng = random.Random(0)
    for _ in range(100):
        prompt, target = pretrain_example(rng)
        lines = prompt.strip().split("\n")[1:]
        assert 2 <= len(lines) <= 6 and "<image>" not in prompt and "Your task" not in prompt
        finding, text, letter, answered = NAMED.search(target).groups()
        assert finding == text and answered == letter and f"{letter}) {text}" in lines
    assert {pretrain_example(rng, ("size",))[0].split("\n")[0] for _ in range(20)} == {"How large is the lesion?"}


def test_the_text_only_task_answers_every_letter_equally_often():
    """Version 3 drew the option count first, so with the size question's 2 or 3 options C was the answer of a
    sixth of the targets (and the trained model never answered C); the letter is now drawn first."""
    rng = random.Random(1)
    draws = [pretrain_example(rng, ("size",)) for _ in range(3000)]
    letters = Counter(NAMED.search(target).group(3) for _, target in draws)
    assert set(letters) == {"A", "B", "C"}
    assert all(abs(n / len(draws) - 1 / 3) < 0.03 for n in letters.values()), letters
    counts = Counter(len(prompt.strip().split("\n")) - 1 for prompt, _ in draws)
    assert set(counts) == {2, 3}  # both option counts still occur


def test_the_build_is_seeded(tmp_path):
    a = build_tiny_base(tmp_path / "a", steps=2, pretrain_steps=2, perception_steps=2)
    b = build_tiny_base(tmp_path / "b", steps=2, pretrain_steps=2, perception_steps=2)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    from transformers import AutoProcessor

    tokenizer = AutoProcessor.from_pretrained(a).tokenizer
    assert tokenizer.tokenize("A) small\nB) upper left") == ["A) small", "Ċ", "B) upper left"]
    assert len(option_tokens()) == len(set(option_tokens())) == 6 * 13
    assert len(finding_tokens()) == len(set(finding_tokens())) == 6 * 13
    # the tags are tokens of their own, so the answer letter is the letter's token, not glued to `>` (`>B`)
    assert tokenizer.tokenize("<answer>B</answer>") == ["<answer>", "B", "</answer>"]
    tokens = tokenizer.tokenize("<think>Finding: large. small, option B.</think>")
    assert tokens[:4] == ["<think>", "Finding: large.", "Ġ", "small, option B"]  # the choice at CHOICE_INDEX
    assert tokens[CHOICE_INDEX] in finding_tokens()


def _choice_probability_of_a(model, processor, rows) -> float:
    """Mean share of option A in the probability the model gives, at the choice token (teacher-forced prefix), to the
    row's option choices."""
    processor.tokenizer.padding_side = "right"
    texts = [
        processor.apply_chat_template(build_prompt(r["question"], r["options"], "r1"), add_generation_prompt=True)
        + perception_target(r)
        + " "
        for r in rows
    ]
    enc = processor(text=texts, images=[r["image"] for r in rows], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**enc).logits
    last = enc["attention_mask"].sum(dim=1) - 1
    shares = []
    for j, r in enumerate(rows):
        choices = [FINDING_TOKEN.format(word=o, letter=LETTERS[i]) for i, o in enumerate(r["options"])]
        probs = torch.softmax(logits[j, last[j], processor.tokenizer.convert_tokens_to_ids(choices)], dim=-1)
        shares.append(probs[0].item())
    return sum(shares) / len(shares)


@pytest.mark.slow
@pytest.mark.parametrize("uniform", [False, True])
def test_the_uniform_choice_keeps_the_choice_a_guess_whatever_the_sampled_target_names(tmp_path, uniform):
    """A cold start whose targets always choose option A: scored token by token it teaches choosing A; scored with
    `uniform_choice` the choice stays uniform over the options. Measured 2026-12-02 (40 steps, batch 8, lr 3e-3, from
    a 2-step build; 24 held-out 2- and 3-option rows, A's share of the options' probability): 0.999 token by token,
    0.451 with the uniform choice (uniform: 0.417); the thresholds sit between."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = build_tiny_base(tmp_path / "m", steps=2, pretrain_steps=2, perception_steps=2)
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    processor.tokenizer.padding_side = "right"
    rows = make_items("coldstart", "MRI", 320)
    always_a = lambda r, _template: THINK_TEMPLATE.format(finding=r["finding"], option=r["options"][0], letter="A")  # noqa: E731
    torch.manual_seed(0)
    model.train()
    train_cold_start(
        model,
        processor,
        rows,
        always_a,
        steps=40,
        batch_size=8,
        learning_rate=3e-3,
        warmup_steps=5,
        uniform_choice=uniform,
    )
    model.eval()
    held_out = make_items("test", "MRI", 24)
    uniform_share = sum(1 / len(r["options"]) for r in held_out) / len(held_out)
    p_a = _choice_probability_of_a(model, processor, held_out)
    if uniform:
        assert abs(p_a - uniform_share) < 0.15
    else:
        assert p_a > uniform_share + 0.3


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
def test_the_base_writes_the_format_perceives_the_finding_and_answers_near_chance():
    """The cached build (seed `BASE_SEED`, version 5) on the 300 held-out MRI test rows. Measured 2026-12-03 (one
    thread): sampled format 0.997, greedy 1.00; the reasoning names the image's finding on 96.7%; the letter of the
    option it chooses is the answer's on 91.0% (the rest choose `small, option B` and answer A); strict accuracy 39.0%
    against a random guess of 41.7%. The perception threshold (0.8) sits between that build and the builds of
    `tiny_base`'s docstring that did not perceive (12-62%; a model that reads nothing names the right one of three
    words about a third of the time): a machine whose build took another trajectory fails here, loudly. The
    agreement threshold (0.8) sits between 91.0% and what an answer that ignored the choice would give (about 42%).
    """
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
    perceived = sum(m is not None and m.group(1) == r["finding"] for m, r in zip(named, rows)) / len(rows)
    assert perceived >= 0.8  # its reasoning names what the image shows, far above a third
    consistent = sum(m is not None and m.group(3) == m.group(4) for m in named) / len(greedy)
    assert consistent >= 0.8  # it answers the letter of the option it chose
