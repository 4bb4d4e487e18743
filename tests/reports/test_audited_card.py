"""The documents of one real (fast) audit through the CLI, read as a reader would."""

from __future__ import annotations

import base64
import json
import re

import pytest
import yaml

from tests.conftest import fast_plan_data
from tests.reports.test_render import FAILED, front_matter_of, rmf_entries, section

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def audit(tmp_path_factory, adult_csvs):
    folder = tmp_path_factory.mktemp("audited-card")
    data = fast_plan_data(*adult_csvs)
    data["checks"].update({
        "robustness": {"attacks": ["fgsm"], "eps": [0.05, 0.1], "max_rows": 300},
        "provenance": {},
    })
    data["model_card"] = {"name": f"adult {SCRIPT}", "overview": f"Overview {SCRIPT}", "intended_use": "tests"}
    plan = folder / "plan.yaml"
    plan.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return folder, plan


@pytest.fixture(scope="module")
def run_dir(audit):
    from govssl.cli import main

    folder, plan = audit
    with pytest.raises(SystemExit) as info:
        main(["audit", str(plan), "--db", f"sqlite:///{folder / 'audit.db'}", "--out", str(folder / "out"), "-q"])
    assert info.value.code == 1  # blocked (the small groups fail equalized odds, no data licence)
    return next((folder / "out").iterdir())


def test_audited_card__front_matter_reads_back_exactly_and_holds_no_markup(run_dir):
    text = (run_dir / "model_card.md").read_text()
    fm = front_matter_of(text)
    assert fm["model-index"][0]["name"] == f"adult {SCRIPT}"
    assert "license" not in fm  # the plan states none
    raw = text.split("---\n", 2)[1]
    assert "<" not in raw
    assert "<script" not in text
    assert "- License: not stated\n" in section(text, "Model details")


def test_audited_card__why_this_verdict_comes_first_with_the_policys_rationale(run_dir):
    text = (run_dir / "model_card.md").read_text()
    assert re.findall(r"^## (.+)$", text, re.M)[0] == "Why this verdict"
    why = section(text, "Why this verdict")
    assert "### `fairness-equalized-odds` (fail, block)" in why
    assert "True and false positive rates may not differ by more than 10 points" in why
    assert re.search(r"- How sure: The 95% confidence interval is [\d.]+ to [\d.]+; it rests on n = \d+ test rows", why)
    assert "### `provenance-license` (fail, block)" in why
    assert "The data's licence must be one the organisation accepts" in why
    html = (run_dir / "model_card.html").read_text()
    assert html.index('<section id="why-this-verdict"') < html.index('<section id="model-details">')


def test_audited_card__small_groups_are_named_and_the_lines_are_separate(run_dir):
    text = (run_dir / "model_card.md").read_text()
    left_out = re.findall(r"^Left out of the gaps above for having fewer than 30 test rows: (.+)\.$", text, re.M)
    assert left_out and all(re.fullmatch(r"[^;]+ \(n = \d+\)(; [^;]+ \(n = \d+\))*", line) for line in left_out)
    assert re.search(r"rate of the positive label: [\d.]+\n- Rows read by self-supervised pretraining", text)


def test_audited_card__robustness_chart_has_group_lines_and_is_linked(run_dir):
    svg = (run_dir / "robustness.svg").read_text()
    for label in ("all test rows", "sex=Female (n=", "race=White (n="):
        assert f"<!-- {label}" in svg
    assert "[robustness.svg](robustness.svg)" in (run_dir / "model_card.md").read_text()
    assert '<a href="robustness.svg"><img src="robustness.svg"' in (run_dir / "model_card.html").read_text()


def test_audited_card__no_manifest_is_evidence_that_fails_policy_in_the_rmf_report(run_dir):
    entries = dict(rmf_entries((run_dir / "rmf_report.md").read_text()))
    assert entries["GOVERN 6.1"] == entries["MAP 4.1"] == FAILED


def test_audited_card__every_file_of_the_run_folder_is_an_attestation_subject(run_dir):
    envelope = json.loads((run_dir / "attestation.intoto.json").read_text())
    stmt = json.loads(base64.b64decode(envelope["payload"]))
    names = {s["name"] for s in stmt["subject"] if not s["name"].startswith("data/")}
    assert names == {p.name for p in run_dir.iterdir() if p.name != "attestation.intoto.json"}
    assert {"model_card.json", "model_card.html", "rmf_report.html", "datasheet.html", "robustness.svg"} <= names
