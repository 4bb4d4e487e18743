"""The datasheet: the 57 questions of Gebru et al. (2021) in their sections and order, answered
from the data, from the plan's answers file, or marked unanswered."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from govssl.errors import ConfigError
from govssl.reports import datasheet_context, render
from govssl.reports._datasheet import QUESTION_IDS, SECTIONS
from tests.reports.test_render import make_run

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "datasheet_questions.json"


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.is_file():
        pytest.skip("the reference list of datasheet questions is not available")
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def test_datasheet_questions__same_sections_ids_and_order_as_the_paper(reference):
    assert [s["section"] for s in reference["sections"]] == [title for title, _ in SECTIONS]
    assert [[q["id"] for q in s["questions"]] for s in reference["sections"]] == \
        [[qid for qid, _ in questions] for _, questions in SECTIONS]
    assert len(QUESTION_IDS) == reference["total_questions"] == 57


def test_datasheet_questions__are_asked_in_our_own_words(reference):
    theirs = {q["id"]: q["question"].lower() for s in reference["sections"] for q in s["questions"]}
    same = [qid for _, questions in SECTIONS for qid, text in questions
            if text.lower() == theirs[qid] and not text.startswith("Anything else")]
    assert same == []


def test_render__datasheet_has_57_questions_in_7_sections_in_reference_order(tmp_path, reference):
    run = make_run(tmp_path)
    render(run, Path(run.out_dir))
    text = (Path(run.out_dir) / "datasheet.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert sections == [s["section"] for s in reference["sections"]]
    asked = re.findall(r"^\*\*(\d+)\. .*\*\* \(`([a-z]+\.\d\d)`, (derived|supplied|unanswered)\)$", text, re.M)
    assert [qid for _, qid, _ in asked] == [q["id"] for s in reference["sections"] for q in s["questions"]]
    assert [int(n) for n, _, _ in asked] == list(range(1, 58))
    assert "Gebru" in text and "doi:10.1145/3458723" in text


def test_datasheet_context__derives_counts_and_licence_and_counts_every_origin(tmp_path):
    run = make_run(tmp_path)
    context = datasheet_context(run)
    answers = {q["id"]: q for s in context["sections"] for q in s["questions"]}
    assert "48842 rows" in answers["composition.02"]["answer"]  # 32561 + 16281
    assert answers["composition.02"]["origin"] == "derived"
    assert "CC BY 4.0" in answers["distribution.04"]["answer"]
    assert "workclass: 2799" in answers["composition.06"]["answer"]
    assert answers["motivation.03"]["origin"] == "unanswered"
    counts = context["counts"]
    assert sum(counts.values()) == 57 and counts["supplied"] == 0
    assert counts["derived"] == sum(q["origin"] == "derived" for q in answers.values())


def test_datasheet_context__answers_file_fills_what_the_data_cannot(tmp_path):
    run = make_run(tmp_path)
    answers = tmp_path / "answers.yaml"
    answers.write_text("motivation.03: No external funding.\nuses.05: Decisions about individuals.\n")
    run.plan["dataset"] = {"datasheet": str(answers)}
    context = datasheet_context(run)
    got = {q["id"]: q for s in context["sections"] for q in s["questions"]}
    assert got["motivation.03"]["origin"] == "supplied" and got["motivation.03"]["answer"] == "No external funding."
    assert context["counts"]["supplied"] == 2


@pytest.mark.parametrize("content, key", [
    ("motivation.01: ok\nmotivation.17: no such question\n", "motivation.17"),
    ("uses.01: [a, list]\n", "uses.01"),
])
def test_datasheet_context__bad_answers_name_file_and_key(tmp_path, content, key):
    run = make_run(tmp_path)
    answers = tmp_path / "answers.yaml"
    answers.write_text(content)
    run.plan["dataset"] = {"datasheet": str(answers)}
    with pytest.raises(ConfigError) as info:
        datasheet_context(run)
    assert f"{answers}: {key}:" in str(info.value)
