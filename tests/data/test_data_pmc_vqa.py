"""PMC-VQA: the card's CSV layout in, contract rows out; letter prefixes stripped; bad rows stopped or counted."""

from __future__ import annotations

import pytest
from test_data_layouts import pmc_record, save_image, write_pmc_csv, write_pmc_vqa

from medvlm_trl.data.pmc_vqa import load_pmc_vqa, parse_choice
from medvlm_trl.data.prompts import prompt_text
from medvlm_trl.data.schema import BadRowError, SkipReport, check_row


@pytest.fixture
def pmc_folder(tmp_path):
    train = [pmc_record(f"{i}") for i in range(6)]
    test = [pmc_record(f"t{i}", label="ABCD"[i % 4]) for i in range(4)]
    return write_pmc_vqa(tmp_path, {"train": train, "test": test, "test_clean": test[:2]})


def test_rows_follow_the_contract_and_choices_lose_their_letter_prefix(pmc_folder):
    rows = load_pmc_vqa(pmc_folder, "train")
    assert len(rows) == 6
    for row in rows:
        check_row(row)
        assert row["source"] == "PMC-VQA" and isinstance(row["image"], str)
    first = rows[0]
    assert first["options"] == ["choice 0 0", "choice 0 1", "choice 0 2", "choice 0 3"]
    assert first["answer"] == "B" and first["image_file"] == "PMC0_F1.jpg"
    assert first["image"] == str((pmc_folder / "images" / "PMC0_F1.jpg").resolve())
    # The prompt renders the bare texts as `A) ...`, never `A) A:...`.
    assert "\nA) choice 0 0\nB) choice 0 1\n" in prompt_text(first["question"], first["options"])


def test_test_and_test_clean_share_ids_for_the_same_questions(pmc_folder):
    test, clean = load_pmc_vqa(pmc_folder, "test"), load_pmc_vqa(pmc_folder, "test_clean")
    assert [r["answer"] for r in test] == list("ABCD")
    assert [r["id"] for r in clean] == [r["id"] for r in test[:2]]
    with pytest.raises(ValueError, match="splits"):
        load_pmc_vqa(pmc_folder, "test_clean", version=2)


@pytest.mark.parametrize(
    "text, letter, expected",
    [("A:Diffuse", "A", "Diffuse"), (" C : 3 mm ", "C", "3 mm"), ("B:A:B ratio", "B", "A:B ratio"), ("D", "A", "D")],
)
def test_parse_choice(text, letter, expected):
    assert parse_choice(text, letter) == expected


def test_answer_label_variants(tmp_path):
    letter_only = {**pmc_record("1", label="C"), "Answer": "C"}
    typo = pmc_record("2", label="D")
    header = ["", "Figure_path", "Question", "Anwser", "Choice A", "Choice B", "Choice C", "Choice D", "Anwser_label"]
    write_pmc_csv(tmp_path / "a.csv", [{k: v for k, v in letter_only.items() if k != "Answer_label"}])
    write_pmc_csv(tmp_path / "b.csv", [{**typo, "": "0", "Anwser": typo["Answer"], "Anwser_label": "D"}], header)
    for name in ("PMC1_F1.jpg", "PMC2_F1.jpg"):
        save_image(tmp_path / "images", name)
    assert load_pmc_vqa(tmp_path / "a.csv")[0]["answer"] == "C"  # an `Answer` column holding the letter
    assert load_pmc_vqa(tmp_path / "b.csv")[0]["answer"] == "D"  # older copies' `Anwser` spelling, index column


def test_three_option_rows_keep_three_options(tmp_path):
    record = {**pmc_record("3", label="A"), "Choice D": ""}
    write_pmc_csv(tmp_path / "train.csv", [record])
    save_image(tmp_path / "images", "PMC3_F1.jpg")
    assert load_pmc_vqa(tmp_path)[0]["options"] == ["choice 3 0", "choice 3 1", "choice 3 2"]


BAD = {
    "answer_not_in_options": {"Answer_label": "E", "Answer": "elsewhere"},
    "answer_mismatch": {"Answer_label": "A"},  # the text is choice B's
    "option_count": {"Choice B": "", "Choice C": "", "Choice D": ""},
    "empty_option": {"Choice B": "B:"},
    "ambiguous_answer": {"Choice D": "D:Choice  bad 1"},  # reads as the correct option B (case and spaces aside)
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_each_bad_row_raises_naming_the_row_or_is_skipped_and_counted(tmp_path, reason):
    good, bad = pmc_record("good"), {**pmc_record("bad"), **BAD[reason]}
    write_pmc_vqa(tmp_path, {"train": [good, bad]})
    with pytest.raises(BadRowError) as err:
        load_pmc_vqa(tmp_path)
    assert err.value.reason == reason and "PMCbad_F1.jpg" in str(err.value)
    report = SkipReport()
    rows = load_pmc_vqa(tmp_path, skip_bad_rows=True, report=report)
    assert [r["image_file"] for r in rows] == ["PMCgood_F1.jpg"] and dict(report.counts) == {reason: 1}


def test_missing_and_unreadable_images_and_duplicates(tmp_path):
    records = [pmc_record("a"), pmc_record("missing"), pmc_record("a"), pmc_record("broken")]
    write_pmc_vqa(tmp_path, {"train": records})
    (tmp_path / "images" / "PMCmissing_F1.jpg").unlink()
    (tmp_path / "images" / "PMCbroken_F1.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(BadRowError, match="PMCmissing_F1.jpg"):
        load_pmc_vqa(tmp_path)
    report = SkipReport()
    rows = load_pmc_vqa(tmp_path, skip_bad_rows=True, report=report, check_images="decode")
    assert [r["image_file"] for r in rows] == ["PMCa_F1.jpg"]
    assert dict(report.counts) == {"missing_image": 1, "duplicate_id": 1, "unreadable_image": 1}


@pytest.mark.parametrize("image_dir", ["images", "images/images", "figures"])
def test_zipped_figures_are_found_wherever_the_archive_puts_them(tmp_path, image_dir):
    write_pmc_vqa(tmp_path, {"train": [pmc_record("z")]}, image_dir=image_dir, zip_images=True)
    rows = load_pmc_vqa(tmp_path)
    assert rows[0]["image"] == str((tmp_path / image_dir / "PMCz_F1.jpg").resolve())


def test_the_figure_folder_is_found_although_the_first_figure_is_missing(tmp_path):
    write_pmc_vqa(tmp_path, {"train": [pmc_record("gone"), pmc_record("here")]}, image_dir="figures")
    (tmp_path / "figures" / "PMCgone_F1.jpg").unlink()
    report = SkipReport()
    rows = load_pmc_vqa(tmp_path, skip_bad_rows=True, report=report)
    assert [r["image_file"] for r in rows] == ["PMChere_F1.jpg"] and dict(report.counts) == {"missing_image": 1}


def test_a_hub_id_downloads_only_the_chosen_version(pmc_folder, fake_download):
    calls = fake_download(pmc_folder)
    rows = load_pmc_vqa("xmcmic/PMC-VQA", "test")
    assert len(rows) == 4 and calls[0][0] == "xmcmic/PMC-VQA"
    assert {"train.csv", "test.csv", "test_clean.csv", "images.zip"} <= set(calls[0][1])
    assert "images_2.zip" not in calls[0][1]


def test_a_csv_without_the_card_columns_is_refused(tmp_path):
    write_pmc_csv(tmp_path / "train.csv", [{"Figure_path": "x.jpg"}], header=["Figure_path", "Caption"])
    with pytest.raises(ValueError, match="choice_a"):
        load_pmc_vqa(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        "Figure_path,Question,Choice A,Choice B\na.jpg,Q\xff?,A:x,B:y\n".encode("latin-1"),  # not UTF-8
        b"\x89PNG\r\n\x1a\n\0\0\0",  # an image saved under the CSV's name
        b'Figure_path,Question,Choice A,Choice B\na.jpg,"' + b"x" * 200_000 + b'",A:x,B:y\n',  # over csv's limit
    ],
)
def test_a_csv_that_cannot_be_read_names_the_file(tmp_path, content):
    (tmp_path / "train.csv").write_bytes(content)
    with pytest.raises(ValueError, match="train.csv: unreadable as a UTF-8 CSV"):
        load_pmc_vqa(tmp_path)


def test_a_line_with_more_values_than_columns_is_a_bad_row_not_shifted_fields(tmp_path):
    # An unquoted comma in the question: every field after it moves one column to the right.
    write_pmc_vqa(tmp_path, {"train": [pmc_record("good"), pmc_record("bad")]})
    csv_path = tmp_path / "train.csv"
    csv_path.write_text(csv_path.read_text().replace("What does figure bad show?", "What does figure bad, show?"))
    with pytest.raises(BadRowError, match=r"malformed_row \(line 3 has 1 value\(s\) beyond the header\)") as err:
        load_pmc_vqa(tmp_path)
    assert "PMCbad_F1.jpg" in str(err.value)
    report = SkipReport()
    rows = load_pmc_vqa(tmp_path, skip_bad_rows=True, report=report)
    assert [r["image_file"] for r in rows] == ["PMCgood_F1.jpg"] and dict(report.counts) == {"malformed_row": 1}
    # A line that merely ends with a comma (an empty value beyond the header) has shifted nothing.
    write_pmc_vqa(tmp_path, {"train": [pmc_record("good")]})
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([lines[0], *(line + "," for line in lines[1:])]) + "\n")
    assert [r["image_file"] for r in load_pmc_vqa(tmp_path)] == ["PMCgood_F1.jpg"]
