"""`medvlm-trl eval`: the tiny model on the sample set, resuming after an interruption, scoring and bad input."""

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import AUTHORS_TEST_MANIFEST, needs_authors_manifest
from PIL import Image

from medvlm_trl.data.sample import load_sample
from medvlm_trl.data.schema import BadRowError
from medvlm_trl.eval import score_letter, score_strict
from medvlm_trl.eval.run import EvalArguments, EvalInputError, HFGenerator, evaluate, main, read_predictions, run_eval
from medvlm_trl.eval.table import build_table, render_markdown
from medvlm_trl.tiny import TINY_MAX_PIXELS, TINY_MIN_PIXELS

PIXELS = ["--min_pixels", str(TINY_MIN_PIXELS), "--max_pixels", str(TINY_MAX_PIXELS)]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Scripted:
    """A test double for the model: replies by question (the first line of the prompt text), counting its calls."""

    def __init__(self, replies: dict[str, str], default: str = "<think>unsure</think><answer>A</answer>"):
        self.replies, self.default, self.asked = replies, default, []

    def __call__(self, prompts, images):
        assert all(len(imgs) == 1 and isinstance(imgs[0], Image.Image) for imgs in images)
        questions = [p[0]["content"][-1]["text"].split("\n")[0].strip() for p in prompts]
        self.asked += questions
        return [self.replies.get(q, self.default) for q in questions]


def make_rows(tmp_path: Path, n: int = 6) -> list[dict]:
    """Contract rows over real PNG files: modalities MRI, MRI, CT, CT, X-ray, X-ray, ...; the last has 2 options."""
    rows = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (60 + i, 50), (10 * i, 80, 160)).save(path)
        options = ["Hemorrhage", "Acute infarct", "Abscess", "Chronic infarct"] if i < n - 1 else ["Yes", "No"]
        rows.append(
            {
                "id": f"r{i}",
                "image": str(path),
                "question": f"Question {i}: what is seen?",
                "options": options,
                "answer": "B",
                "modality": ["MRI", "CT", "X-ray"][(i // 2) % 3],
                "source": "test",
            }
        )
    return rows


@pytest.fixture(scope="module")
def hf_generator(tiny_vlm):
    return HFGenerator(tiny_vlm, max_new_tokens=8, min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS, device="cpu")


def test_cli_eval_of_the_tiny_model_on_the_sample_set(tmp_path, tiny_vlm, capsys):
    out = tmp_path / "run"
    argv = ["--model", tiny_vlm, "--split", "sample", "--prompt", "r1", "--out", str(out), "--max_new_tokens", "8"]
    assert main(argv + ["--batch_size", "8", "--no_progress", *PIXELS]) == 0
    rows = load_sample("test")
    records = lines(out / "predictions.jsonl")
    assert [r["id"] for r in records] == [r["id"] for r in rows]  # one line per question, none twice
    for record in records:  # every score is the strict rule applied to the recorded completion
        assert record["score"] == score_strict(record["completion"], record["answer"])
        assert set(record["audit"]) >= {"mismatch", "empty_think", "superficial_think"}
    summary = json.loads((out / "summary.json").read_text())
    counts = Counter(r["modality"] for r in rows)
    assert {m: g["n"] for m, g in summary["modalities"].items()} == counts
    assert all(g["random_guess"] == 25.0 for g in summary["modalities"].values())  # four options everywhere
    assert summary["overall"]["n"] == len(rows) and summary["complete"] and summary["scoring"] == "strict"
    assert summary["overall"]["accuracy"] == 100.0 * sum(r["score"] for r in records) / len(rows)
    assert summary["config"]["backend"] == "hf" and summary["config"]["max_pixels"] == TINY_MAX_PIXELS
    assert summary["metrics"]["token_length"]["unit"] == "tokens"
    assert "overall" in capsys.readouterr().out


def test_resume_after_an_interrupted_run_scores_no_question_twice(tmp_path, hf_generator):
    rows = load_sample("test")
    kwargs = dict(prompt="r1", batch_size=4, min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS, progress=False)
    clean = evaluate(rows, hf_generator, tmp_path / "clean", **kwargs)

    class KilledAfter:
        """The real generator, interrupted on its third batch (after 8 rows were written)."""

        image_factor = hf_generator.image_factor  # images on the model's grid, as the clean run had them

        def __init__(self, batches):
            self.batches, self.prompts = batches, 0

        def __call__(self, prompts, images):
            if self.batches == 0:
                raise KeyboardInterrupt
            self.batches -= 1
            self.prompts += len(prompts)
            return hf_generator(prompts, images)

    with pytest.raises(KeyboardInterrupt):
        evaluate(rows, KilledAfter(2), tmp_path / "resumed", **kwargs)
    assert len(lines(tmp_path / "resumed" / "predictions.jsonl")) == 8
    rest = KilledAfter(100)
    resumed = evaluate(rows, rest, tmp_path / "resumed", **kwargs)
    assert rest.prompts == len(rows) - 8  # only the rows not yet scored were generated again
    records = lines(tmp_path / "resumed" / "predictions.jsonl")
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in rows)  # each id exactly once
    reference = {r["id"]: r for r in lines(tmp_path / "clean" / "predictions.jsonl")}
    assert all(r["completion"] == reference[r["id"]]["completion"] for r in records)
    for key in ("modalities", "overall", "average"):
        assert resumed[key] == clean[key]


@pytest.mark.slow
def test_resume_after_the_eval_process_is_killed(tmp_path, tiny_vlm):
    """SIGKILL the CLI mid-run (as a pre-empted job would be), rerun the same command: same totals, no duplicates."""
    argv = ["--model", tiny_vlm, "--split", "sample", "--prompt", "simple", "--max_new_tokens", "24", "--limit", "12"]
    argv += ["--batch_size", "1", "--metrics", "none", "--no_progress", *PIXELS]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "medvlm_trl.cli", "eval", *argv, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    predictions = killed / "predictions.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if predictions.exists() and predictions.read_text().count("\n") >= 3:
            proc.kill()
            break
        time.sleep(0.02)
    proc.wait()
    written = len(read_predictions(predictions))
    assert proc.returncode != 0 and 3 <= written < 12, "the run must be killed part-way"
    assert main(argv + ["--out", str(killed)]) == 0
    assert main(argv + ["--out", str(tmp_path / "clean")]) == 0
    records = lines(predictions)
    assert len(records) == 12 and len({r["id"] for r in records}) == 12
    resumed = json.loads((killed / "summary.json").read_text())
    clean = json.loads((tmp_path / "clean" / "summary.json").read_text())
    assert resumed["modalities"] == clean["modalities"] and resumed["overall"] == clean["overall"]


def test_a_line_cut_off_by_a_kill_is_redone(tmp_path):
    rows = make_rows(tmp_path)
    out = tmp_path / "run"
    evaluate(rows, Scripted({}), out, progress=False)
    path = out / "predictions.jsonl"
    text = path.read_text()
    last = text.splitlines()[-1]
    path.write_text(text[: len(text) - len(last) - 1] + last[: len(last) // 2])  # the write of the last row was cut
    again = Scripted({})
    summary = evaluate(rows, again, out, progress=False)
    assert again.asked == [rows[-1]["question"]]
    assert [r["id"] for r in lines(path)] == [r["id"] for r in rows] and summary["complete"]


def test_a_damaged_line_inside_the_file_is_an_error(tmp_path):
    rows = make_rows(tmp_path)
    out = tmp_path / "run"
    evaluate(rows, Scripted({}), out, progress=False)
    path = out / "predictions.jsonl"
    text = path.read_text().splitlines()
    text[1] = text[1][:10]
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(EvalInputError, match="line 2 is not JSON"):
        evaluate(rows, Scripted({}), out, progress=False)


def test_scores_accuracy_random_guess_and_consistency_per_modality(tmp_path):
    rows = make_rows(tmp_path)  # answer B everywhere; MRI r0 r1, CT r2 r3, X-ray r4 r5 (r5 has two options)
    q = [r["question"] for r in rows]
    replies = {
        q[0]: "<think>Volume loss and gliosis in the cortex, so the answer is B.</think><answer>B</answer>",
        q[1]: "<think>Diffusion restriction in a vascular territory: an acute infarct.</think>\n<answer>B</answer>",
        q[2]: "<think>A bright crescent along the convexity: the answer is A.</think><answer>B</answer>",  # mismatch
        q[3]: "<think>Ring enhancement.</think><answer>C</answer>",  # wrong, superficial
        q[4]: "<answer>B: Acute infarct</answer>",  # strictly wrong, no reasoning
        q[5]: "<think></think><answer>B</answer>",  # right, empty reasoning
    }
    summary = evaluate(rows, Scripted(replies), tmp_path / "run", min_think_words=5, progress=False)
    mods = summary["modalities"]
    assert {m: g["accuracy"] for m, g in mods.items()} == {"MRI": 100.0, "CT": 50.0, "X-ray": 50.0}
    assert {m: g["random_guess"] for m, g in mods.items()} == {"MRI": 25.0, "CT": 25.0, "X-ray": 37.5}
    assert summary["overall"]["accuracy"] == pytest.approx(400 / 6) and summary["average"] == pytest.approx(200 / 3)
    assert mods["CT"]["consistency"]["mismatch_rate"] == 50.0 and mods["MRI"]["consistency"]["mismatch_rate"] == 0
    assert mods["CT"]["consistency"]["superficial_think_rate"] == 50.0
    assert mods["X-ray"]["consistency"]["empty_think_rate"] == 100.0
    parsed = {r["id"]: r["parsed"] for r in lines(tmp_path / "run" / "predictions.jsonl")}
    assert parsed["r4"] == "B: Acute infarct" and parsed["r3"] == "C"


def test_the_simple_prompt_is_scored_by_the_letter_rule(tmp_path):
    rows = make_rows(tmp_path, 3)
    replies = {rows[0]["question"]: "B.", rows[1]["question"]: "<answer>B</answer>", rows[2]["question"]: "(B)"}
    summary = evaluate(rows, Scripted(replies), tmp_path / "run", prompt="simple", progress=False)
    records = lines(tmp_path / "run" / "predictions.jsonl")
    assert [r["score"] for r in records] == [score_letter(replies[r["question"]], "B") for r in records] == [1, 0, 1]
    assert summary["scoring"] == "letter" and "consistency" not in summary["overall"] and "audit" not in records[0]


def test_the_study_rule_counts_the_correct_option_text_and_a_resume_keeps_the_rule(tmp_path):
    rows = make_rows(tmp_path, 5)[:4]  # four options each; the correct answer is B, "Acute infarct"
    replies = ["<think>t</think><answer>Acute infarct</answer>", "<think>t</think><answer>B:Acute infarct</answer>",
               "<think>t</think><answer> acute  infarct. </answer>", "<think>t</think><answer>Abscess</answer>"]  # fmt: skip

    def study_double(prompts, images):
        texts = [p[0]["content"][-1]["text"] for p in prompts]
        # The study's prompt: its option rendering, then its instruction sentence.
        assert all("Choose between the following options: A:Hemorrhage , B:Acute infarct" in t for t in texts)
        return [replies[int(t.split(":")[0].split()[-1])] for t in texts]

    out = tmp_path / "study"
    summary = evaluate(rows, study_double, out, prompt="study", answer_rule="study", progress=False)
    assert summary["scoring"] == "study" and summary["config"]["scoring"] == "study"
    assert [r["score"] for r in lines(out / "predictions.jsonl")] == [1.0, 1.0, 1.0, 0.0]
    # The same completions under MedVLM-R1's strict rule: none is exactly the letter.
    strict = evaluate(rows, study_double, tmp_path / "strict", prompt="study", progress=False)
    assert strict["scoring"] == "strict" and strict["overall"]["accuracy"] == 0.0
    # A rerun into the study folder under another rule would mix two rules in one file: refused.
    with pytest.raises(EvalInputError, match="scoring: 'study' before, 'strict' now"):
        evaluate(rows, study_double, out, prompt="study", answer_rule="strict", progress=False)


def _args(tmp_path: Path, split: Path, **kw) -> EvalArguments:
    return EvalArguments(
        model=str(tmp_path / "no-such-model"), split=str(split), out=str(tmp_path / "run"), progress=False, **kw
    )


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows))
    return path


def test_a_rerun_with_other_settings_is_refused_before_loading_a_model(tmp_path, capsys):
    split = _write(tmp_path / "rows.json", make_rows(tmp_path))
    run_eval(_args(tmp_path, split, metrics="none"), generator=Scripted({}))
    # No model exists at --model: the refusal must come before any attempt to load it.
    code = main(["--model", str(tmp_path / "no-such-model"), "--split", str(split), "--prompt", "simple"]
                + ["--out", str(tmp_path / "run"), "--no_progress"])  # fmt: skip
    assert code == 2 and "prompt: 'r1' before, 'simple' now" in capsys.readouterr().err
    # Another dtype makes other completions too: refused the same way.
    code = main(["--model", str(tmp_path / "no-such-model"), "--split", str(split), "--dtype", "bfloat16"]
                + ["--out", str(tmp_path / "run"), "--no_progress"])  # fmt: skip
    assert code == 2 and "dtype: 'auto' before, 'bfloat16' now" in capsys.readouterr().err
    # The same settings again: nothing left to do, so no model is loaded either.
    assert main(["--model", str(tmp_path / "no-such-model"), "--split", str(split), "--out", str(tmp_path / "run"),
                 "--metrics", "none", "--no_progress"]) == 0  # fmt: skip


def test_a_modality_that_is_not_text_is_a_bad_row_not_a_group_of_its_own(tmp_path):
    rows = make_rows(tmp_path)
    rows[0]["modality"] = ["MRI"]
    split = _write(tmp_path / "rows.json", rows)
    with pytest.raises(BadRowError, match=r"row 'r0': bad_modality \(modality is a list, not text\)"):
        run_eval(_args(tmp_path, split, metrics="none"), generator=Scripted({}))
    summary = run_eval(_args(tmp_path, split, skip_bad_rows=True, metrics="none"), generator=Scripted({}))
    assert summary["skipped"]["load"] == {"total": 1, "counts": {"bad_modality": 1}}
    assert "['MRI']" not in summary["modalities"] and summary["modalities"]["MRI"]["n"] == 1


def test_images_written_as_one_string_is_a_bad_row_not_read_letter_by_letter(tmp_path):
    rows = make_rows(tmp_path)
    rows[1]["images"] = rows[1].pop("image")  # a single path where a list belongs
    split = _write(tmp_path / "rows.json", rows)
    with pytest.raises(BadRowError, match=r"row 'r1': unreadable_image \(images is a str, not a list of images\)"):
        run_eval(_args(tmp_path, split, metrics="none"), generator=Scripted({}))
    summary = run_eval(_args(tmp_path, split, skip_bad_rows=True, metrics="none"), generator=Scripted({}))
    assert summary["skipped"]["load"] == {"total": 1, "counts": {"unreadable_image": 1}}
    assert summary["overall"]["n"] == len(rows) - 1


def test_a_bad_row_is_named_or_skipped_and_counted(tmp_path, capsys):
    rows = make_rows(tmp_path)
    rows[2]["answer"] = "Z"
    rows[3]["image"] = str(tmp_path / "missing.png")
    split = _write(tmp_path / "rows.json", rows)
    code = main(["--model", "m", "--split", str(split), "--out", str(tmp_path / "run"), "--no_progress"])
    assert code == 2 and "'r2'" in capsys.readouterr().err
    summary = run_eval(_args(tmp_path, split, skip_bad_rows=True, metrics="none"), generator=Scripted({}))
    assert summary["skipped"]["load"] == {"total": 1, "counts": {"answer_not_in_options": 1}}
    assert summary["skipped"]["counts"] == {"unreadable_image": 1} and summary["skipped"]["examples"] == {
        "unreadable_image": ["r3"]
    }
    assert summary["overall"]["n"] == 4
    assert summary["complete"]  # nothing left to resume: every row is predicted or skipped
    # The table marks the row: its accuracy is over fewer rows than the test split.
    table_dir = tmp_path / "results"
    table_dir.mkdir()
    (tmp_path / "run").rename(table_dir / "grpo_qwen2vl_2b")
    md = render_markdown(build_table("medvlm_r1", table_dir))
    assert "| GRPO (MedVLM-R1) † |" in md and "| Qwen2-VL-2B (zero-shot) |" in md
    assert "† GRPO (MedVLM-R1): 2 bad test row(s) skipped (answer_not_in_options 1, unreadable_image 1)" in md
    (table_dir / "grpo_qwen2vl_2b").rename(tmp_path / "run")
    rows.pop(2)
    split = _write(tmp_path / "rows2.json", rows)
    with pytest.raises(Exception, match="'r3'.*image file not found"):
        run_eval(_args(tmp_path, split, metrics="none", overwrite=True), generator=Scripted({}))


def test_relative_image_paths_are_read_against_the_split_file(tmp_path):
    rows = make_rows(tmp_path, 2)
    for row in rows:
        row["image"] = Path(row["image"]).name
    split = _write(tmp_path / "rows.json", rows)
    summary = run_eval(_args(tmp_path, split, metrics="none"), generator=Scripted({}))
    assert summary["overall"]["n"] == 2


@needs_authors_manifest
def test_a_manifest_without_dataset_and_a_missing_split_are_clear_errors(tmp_path, capsys):
    split = _write(tmp_path / "manifest.json", json.loads(AUTHORS_TEST_MANIFEST.read_text())[:3])
    assert main(["--model", "m", "--split", str(split), "--out", str(tmp_path / "a")]) == 2
    assert "--dataset huatuo" in capsys.readouterr().err
    assert main(["--model", "m", "--split", str(tmp_path / "none.json"), "--out", str(tmp_path / "b")]) == 2
    assert "split file not found" in capsys.readouterr().err
    assert main(["--model", "m", "--batch_size", "0"]) == 2
    assert "batch_size must be a positive integer" in capsys.readouterr().err


def test_images_reach_the_model_at_the_prepared_size(tiny_vlm, monkeypatch):
    """--max_pixels above the processor's own bound: the image is resized once, by prepare_image, not again."""
    import torch

    from medvlm_trl.data.images import prepare_image
    from medvlm_trl.data.prompts import build_prompt

    max_pixels = 4 * TINY_MAX_PIXELS
    generator = HFGenerator(tiny_vlm, max_new_tokens=1, min_pixels=TINY_MIN_PIXELS, max_pixels=max_pixels, device="cpu")
    row = max(load_sample("test"), key=lambda r: Image.open(r["image"]).width * Image.open(r["image"]).height)
    assert generator.image_factor == 28  # read from the tiny Qwen2-VL's processor
    image = prepare_image(row["image"], TINY_MIN_PIXELS, max_pixels, row["id"], factor=generator.image_factor)
    assert image.width * image.height > TINY_MAX_PIXELS  # the processor's own bound would shrink it
    seen = {}

    def spy(**inputs):
        seen.update(inputs)
        return torch.cat([inputs["input_ids"], inputs["input_ids"][:, -1:]], dim=1)

    monkeypatch.setattr(generator.model, "generate", spy)
    generator([build_prompt(row["question"], row["options"], "r1")], [[image]])
    assert seen["image_grid_thw"].tolist() == [[1, image.height // 14, image.width // 14]]
    assert (seen["input_ids"] == generator.model.config.image_token_id).sum() == image.width * image.height // 28**2


def test_only_qwen2_vl_style_processors_get_pixel_bounds(tiny_vlm):
    from transformers import AutoProcessor, CLIPImageProcessor

    from medvlm_trl.eval.generators import _size_kwargs

    class LlavaLike:
        image_processor = CLIPImageProcessor()  # its shortest_edge is a side length, not a pixel count

    assert _size_kwargs(LlavaLike(), 3136, 401408) == {}
    qwen = AutoProcessor.from_pretrained(tiny_vlm)
    assert _size_kwargs(qwen, 3136, 401408) == {"size": {"shortest_edge": 3136, "longest_edge": 401408}}


def test_a_complete_last_line_without_its_newline_is_kept(tmp_path):
    rows = make_rows(tmp_path)
    out = tmp_path / "run"
    evaluate(rows[:3], Scripted({}), out, progress=False)
    path = out / "predictions.jsonl"
    path.write_text(path.read_text().rstrip("\n"))  # killed between the record and its newline
    again = Scripted({})
    evaluate(rows, again, out, progress=False)
    assert again.asked == [r["question"] for r in rows[3:]]
    assert [r["id"] for r in lines(path)] == [r["id"] for r in rows]


def test_a_resume_with_non_string_ids_scores_no_question_twice(tmp_path):
    rows = make_rows(tmp_path)
    for i, row in enumerate(rows):
        row["id"] = i  # the row check accepts any non-empty id; JSON keeps it an int
    out = tmp_path / "run"
    evaluate(rows[:4], Scripted({}), out, progress=False)
    again = Scripted({})
    summary = evaluate(rows, again, out, progress=False)
    assert again.asked == [r["question"] for r in rows[4:]]
    assert [r["id"] for r in lines(out / "predictions.jsonl")] == [r["id"] for r in rows]
    assert summary["overall"]["n"] == len(rows) and summary["complete"]


def test_ids_that_are_one_id_as_text_or_are_not_ids_are_bad_rows(tmp_path):
    """7 and "7" would share one prediction (the file keys ids as text), scoring one question twice; a list id
    crashed with TypeError: unhashable type."""
    rows = make_rows(tmp_path, 4)
    rows[0]["id"], rows[1]["id"], rows[2]["id"] = 7, "7", ["r2"]
    split = _write(tmp_path / "rows.json", rows)
    with pytest.raises(BadRowError) as err:
        run_eval(_args(tmp_path, split, metrics="none"), generator=Scripted({}))
    assert err.value.reason == "duplicate_id"
    summary = run_eval(_args(tmp_path, split, metrics="none", skip_bad_rows=True), generator=Scripted({}))
    assert summary["skipped"]["load"] == {"total": 2, "counts": {"duplicate_id": 1, "missing_id": 1}}
    assert summary["overall"]["n"] == 2 and summary["rows"] == 2


def test_data_layer_errors_and_a_damaged_run_record_end_with_one_line(tmp_path, capsys):
    """An unknown dataset, a split file of the training split, a file that is not UTF-8 text, a damaged run.json:
    exit 2 with one line naming the problem, not a ValueError / UnicodeDecodeError / JSONDecodeError traceback."""
    train = tmp_path / "train.json"
    train.write_text(json.dumps({"format": "medvlm-trl/split-manifest", "format_version": 1, "dataset": "huatuo",
                                 "split": "train", "rows": []}))  # fmt: skip
    binary = tmp_path / "rows.json"
    binary.write_bytes(b"\xff\xfe\x00")
    cases = [
        (["--split", "no_such_dataset"], "unknown dataset 'no_such_dataset'"),
        (["--split", str(train), "--dataset", "huatuo"], "holds the 'train' split, not 'test'"),
        (["--split", str(binary)], "codec can't decode"),
    ]
    for i, (argv, message) in enumerate(cases):
        assert main(["--model", "m", "--out", str(tmp_path / f"out{i}"), "--no_progress", *argv]) == 2, argv
        assert message in capsys.readouterr().err
    split = _write(tmp_path / "good.json", make_rows(tmp_path, 2))
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "run.json").write_text("{")
    assert main(["--model", "m", "--split", str(split), "--out", str(tmp_path / "damaged"), "--no_progress"]) == 2
    assert "run.json is damaged" in capsys.readouterr().err


# --- `--limit`: recorded, never complete, never over a fuller result (issue 17, item 2) ------------------------------


def test_a_limited_eval_records_its_limit_and_never_passes_as_complete(tmp_path, capsys):
    from medvlm_trl import reproduce

    split = _write(tmp_path / "rows.json", make_rows(tmp_path))
    summary = run_eval(_args(tmp_path, split, metrics="none", limit=2), generator=Scripted({}))
    assert (summary["limit"], summary["rows"], summary["split_rows"], summary["overall"]["n"]) == (2, 2, 6, 2)
    assert summary["finished"] and not summary["complete"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["complete"] is False
    # reproduce-table1 takes it neither for a full eval nor for one limited otherwise, only for its own limit.
    assert not reproduce._eval_done(tmp_path / "run")
    assert not reproduce._eval_done(tmp_path / "run", 3) and reproduce._eval_done(tmp_path / "run", 2)
    # The table marks it with the row count, as a row over fewer test rows than the split.
    table_dir = tmp_path / "results"
    table_dir.mkdir()
    (tmp_path / "run").rename(table_dir / "grpo_qwen2vl_2b")
    md = render_markdown(build_table("medvlm_r1", table_dir))
    assert "| GRPO (MedVLM-R1) † |" in md
    assert "† GRPO (MedVLM-R1): limited eval (--limit 2): 2 of 6 test rows have predictions" in md
    # A limit at or above the split's size is the whole split: complete.
    summary = run_eval(_args(tmp_path, split, metrics="none", limit=6), generator=Scripted({}))
    assert summary["complete"] and summary["limit"] == 6


def test_a_limited_eval_does_not_replace_a_fuller_result_unless_told_to(tmp_path, capsys):
    """It used to rewrite the summary of a finished eval with its N rows, marked complete."""
    split = _write(tmp_path / "rows.json", make_rows(tmp_path))
    out = tmp_path / "run"
    assert run_eval(_args(tmp_path, split, metrics="none"), generator=Scripted({}))["complete"]
    full = (out / "summary.json").read_text()
    # No model exists at --model: the refusal comes before any attempt to load one.
    argv = ["--model", str(tmp_path / "no-such-model"), "--split", str(split), "--out", str(out), "--limit", "2"]
    assert main([*argv, "--metrics", "none", "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beyond the first 2 that --limit 2 covers" in err and "--overwrite true" in err
    assert (out / "summary.json").read_text() == full
    # Told to: --overwrite discards the full result first.
    summary = run_eval(_args(tmp_path, split, metrics="none", limit=2, overwrite=True), generator=Scripted({}))
    assert summary["rows"] == 2 and not summary["complete"]
    # A limited eval is a start a later full run resumes: only the other rows are asked.
    generator = Scripted({})
    assert run_eval(_args(tmp_path, split, metrics="none"), generator=generator)["complete"]
    assert len(generator.asked) == 4


def test_a_wrong_value_type_in_an_eval_recipe_or_flag_is_one_line(tmp_path, capsys):
    config = tmp_path / "eval.yaml"
    config.write_text("model: m\nlimit: five\n")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{config}: wrong value type(s): limit needs an integer, got 'five'" in err
    assert main(["--model", "m", "--limit", "five"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "argument --limit: invalid int value: 'five'" in captured.err
