"""What a reader of the documents sees: quoted front matter, no invented licence, the data's origin,
honest RMF statuses, the reasons for the verdict, the small groups, the datasheet's attributions
and the chart link."""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from govssl.checks.base import CheckResult, Measurement
from govssl.plan import ModelCardSpec
from govssl.policy.model import Decision, RuleOutcome
from govssl.reports import datasheet_context, model_card_json, render, rmf_report_context
from tests.conftest import REPO
from tests.reports.test_render import (
    FAILED, MET, adult_summary, decision, fairness_result, front_matter_of, make_run, performance_result,
    rendered, rmf_entries, section,
)

SCRIPT = "<script>alert('x')</script>"


# ---------------------------------------------------------------- front matter


def test_front_matter__user_text_is_quoted_yaml_that_reads_back_exactly_and_shows_no_markup(tmp_path):
    hostile = f'{SCRIPT} & <img src=x onerror=alert(1)> "q" \\ back'
    run = make_run(tmp_path, card={"name": f"card {SCRIPT}", "license": hostile},
                   dataset=adult_summary(name=f"data {SCRIPT}\n---\nlicense: mit"))
    text = rendered(run)["model_card.md"]
    raw = re.match(r"\A---\n(.*?)\n---\n", text, re.S).group(1)
    fm = yaml.safe_load(raw)
    assert fm["license"] == hostile
    assert fm["datasets"] == [f"data {SCRIPT}\n---\nlicense: mit"]
    assert fm["model-index"][0]["name"] == f"card {SCRIPT}"
    # double-quoted scalars from the emitter, with the markup characters as YAML escapes
    assert '\nlicense: "\\x3cscript\\x3ealert(\'x\')\\x3c/script\\x3e \\x26 ' in "\n" + raw
    assert "<" not in raw and ">" not in raw and "&" not in raw
    assert "<script" not in text  # the Markdown body escapes it too
    assert "&lt;script>alert('x')&lt;/script>" in text


# ---------------------------------------------------------------- licence


def test_model_licence__unset_is_not_stated_and_left_out_of_front_matter_and_json(tmp_path):
    assert ModelCardSpec().license is None
    run = make_run(tmp_path, card={"license": None})
    docs = rendered(run)
    assert "license" not in front_matter_of(docs["model_card.md"])
    assert "- License: not stated\n" in section(docs["model_card.md"], "Model details")
    assert "<li>License: not stated</li>" in docs["model_card.html"]
    assert "apache" not in docs["model_card.md"].lower()
    assert "licenses" not in model_card_json(run)["model_details"]


def test_model_licence__a_stated_one_is_shown(tmp_path):
    run = make_run(tmp_path, card={"license": "MIT"})
    assert front_matter_of(rendered(run)["model_card.md"])["license"] == "MIT"
    assert model_card_json(run)["model_details"]["licenses"] == [{"identifier": "MIT"}]


# ---------------------------------------------------------------- data origin


def provenance_result(manifest: dict | None, verified: bool = True) -> CheckResult:
    details = {"manifest": manifest, "trusted_keys": {}}
    return CheckResult("provenance", "measured", (
        Measurement("provenance", "manifest_verified", verified, n=1, details=details),
        Measurement("provenance", "signature_valid", False),
        Measurement("provenance", "signer_trusted", False),
        Measurement("provenance", "license_allowed", False),
        Measurement("provenance", "source_declared", bool(manifest)),
    ))


MANIFEST = {"path": "/data/manifest.json", "source": "Supplier X export", "license": "CC-BY-4.0",
            "creator": "Supplier X", "collection_notes": "", "files": [], "signers": []}


def undeclared() -> object:
    return replace(adult_summary(), source="not declared", license="not declared")


def test_data_origin__a_verified_manifest_fills_what_the_plan_leaves_out(tmp_path):
    run = make_run(tmp_path, dataset=undeclared(),
                   results=[performance_result(), provenance_result(MANIFEST)])
    docs = rendered(run)
    evaluation = section(docs["model_card.md"], "Evaluation data")
    assert "- Source: Supplier X export\n- License: CC-BY-4.0\n- Creator: Supplier X\n" in evaluation
    assert "not declared" not in evaluation
    head = docs["datasheet.md"].split("\n## ")[0]
    assert "- Source: Supplier X export\n- Licence: CC-BY-4.0\n- Creator: Supplier X\n" in head


def test_data_origin__the_manifest_verified_before_training_counts_without_the_provenance_check(tmp_path):
    # the README's plan template runs performance and fairness only: the manifest the audit
    # verified before training still names the data's origin
    run = make_run(tmp_path, dataset=replace(undeclared(), manifest=MANIFEST), results=[performance_result()])
    docs = rendered(run)
    evaluation = section(docs["model_card.md"], "Evaluation data")
    assert "- Source: Supplier X export\n- License: CC-BY-4.0\n- Creator: Supplier X\n" in evaluation
    assert "From the verified data manifest `manifest.json`: source, license, creator" in evaluation
    head = docs["datasheet.md"].split("\n## ")[0]
    assert "- Source: Supplier X export\n- Licence: CC-BY-4.0\n- Creator: Supplier X\n" in head


def test_data_origin__the_plan_wins_and_an_unverified_manifest_is_not_used(tmp_path):
    run = make_run(tmp_path, results=[performance_result(), provenance_result(MANIFEST)])
    evaluation = section(rendered(run)["model_card.md"], "Evaluation data")
    assert "- Source: UCI Machine Learning Repository\n- License: CC BY 4.0\n" in evaluation
    assert "Supplier X export" not in evaluation and "CC-BY-4.0" not in evaluation
    # the plan states no creator: that one comes from the manifest, and the card says so
    assert "- From the verified data manifest `manifest.json`: creator (the plan does not state them)" in evaluation
    (tmp_path / "b").mkdir()
    run = make_run(tmp_path / "b", dataset=undeclared(),
                   results=[performance_result(), provenance_result(MANIFEST, verified=False)])
    evaluation = section(rendered(run)["model_card.md"], "Evaluation data")
    assert "- Source: not declared\n- License: not declared\n" in evaluation


# ---------------------------------------------------------------- RMF statuses


def test_rmf__failing_provenance_rules_and_a_failing_warning_are_evidence_that_fails_policy(tmp_path):
    outcomes = (
        RuleOutcome("provenance-manifest", "provenance", "manifest_verified", "warn", "fail", False, "",
                    "== True", "manifest_verified is False", ("GOVERN 6.1", "MAP 4.1")),
        RuleOutcome("poisoning-detector-recall", "poisoning", "detector_recall", "warn", "fail", 0.2,
                    "", ">= 0.5", "0.2 < 0.5", ("MANAGE 2.3",)),
        RuleOutcome("privacy-membership-advantage", "privacy", "membership_advantage", "block",
                    "skipped", None, "", "<= 0.1", "check 'privacy' was not run", ("MEASURE 2.10",)),
        RuleOutcome("performance-min-accuracy", "performance", "accuracy", "block", "pass", 0.84, "",
                    ">= 0.8", "ok", ("MEASURE 2.5",)),
    )
    run = make_run(tmp_path, outcome=Decision(outcomes),
                   results=[performance_result(), provenance_result(None, verified=False)])
    docs = rendered(run)
    entries = dict(rmf_entries(docs["rmf_report.md"]))
    assert entries["GOVERN 6.1"] == entries["MAP 4.1"] == entries["MANAGE 2.3"] == FAILED
    assert entries["MEASURE 2.5"] == MET
    assert entries["MEASURE 2.10"] == "open"  # a skipped rule is no evidence
    html = docs["rmf_report.html"]
    assert '<h4>GOVERN 6.1 <span class="badge badge-rmf-failed">evidenced, fails policy</span></h4>' in html
    assert "badge-evidenced" not in html.split("<section id=\"GOVERN\">", 1)[1]


def test_rmf__a_missing_rule_beside_a_passing_one_fails_policy_and_alone_is_open(tmp_path):
    outcomes = (
        RuleOutcome("a", "performance", "accuracy", "block", "pass", 0.9, "", ">= 0.5", "ok", ("MEASURE 2.5",)),
        RuleOutcome("b", "robustness", "robust_accuracy", "warn", "missing", None, "", ">= 0.5",
                    "check 'robustness' errored", ("MEASURE 2.5", "MEASURE 2.6")),
    )
    context = rmf_report_context(make_run(tmp_path, outcome=Decision(outcomes), results=[]))
    subs = {s["id"]: s for f in context["functions"] for c in f["categories"] for s in c["subcategories"]}
    assert subs["MEASURE 2.5"]["status"] == "failed"
    assert subs["MEASURE 2.6"]["status"] == "open"
    assert sum(context["totals"][k] for k in ("met", "failed", "ungated", "attested", "open")) == 72


# ---------------------------------------------------------------- why this verdict


def run_with_policy(tmp_path, policy_text: str | None = None):
    policy = tmp_path / "policy.yaml"
    shutil.copy(REPO / "policies" / "default.yaml", policy)
    sha = hashlib.sha256(policy.read_bytes()).hexdigest()
    if policy_text is not None:
        policy.write_text(policy_text)
    outcomes = list(decision().outcomes)
    outcomes[1] = replace(outcomes[1], rule_id="fairness-equalized-odds")
    run = make_run(tmp_path, outcome=Decision(tuple(outcomes)))
    run.policy_path, run.policy_sha256 = str(policy), sha
    return run


def test_why_this_verdict__names_each_blocking_rule_in_plain_words(tmp_path):
    docs = rendered(run_with_policy(tmp_path))
    card = docs["model_card.md"]
    assert card.index("## Why this verdict") < card.index("## Model details")
    why = section(card, "Why this verdict")
    assert "2 blocking rule(s) of the policy default failed or could not be evaluated" in why
    rule = why.split("### `fairness-equalized-odds` (fail, block)", 1)[1].split("###", 1)[0]
    assert ("- Why the policy has this rule: True and false positive rates may not differ by more "
            "than 10 points between any two groups") in rule
    assert "- What `equalized_odds_difference` measures: The largest difference between groups" in rule
    assert ("- What was found: 0.1342 for sex*race, the high end of the confidence interval "
            "(the pessimistic reading of a maximum); the limit is at most 0.1.") in rule
    assert ("- How sure: The measured value is 0.0921; the confidence interval is 0.0712 to 0.1342; "
            "it rests on n = 16281 test rows (the smallest group included).") in rule
    missing = why.split("### `robustness-pgd` (missing, block)", 1)[1]
    assert "No figure could be judged: the robustness check errored. A rule without its evidence fails." in missing
    assert "Warnings (they do not block): `fairness-demographic-parity`" in why
    html = docs["model_card.html"]
    assert '<section id="why-this-verdict" class="why">' in html
    assert "<li>Why the policy has this rule: True and false positive rates" in html


def test_why_this_verdict__a_changed_policy_file_gives_no_rationale_and_says_why(tmp_path):
    why = section(rendered(run_with_policy(tmp_path, "policy: edited\n"))["model_card.md"], "Why this verdict")
    assert ("Why the policy has this rule: The policy's rationale for this rule is not available: the policy "
            "file policy.yaml has changed since the audit (its sha256 differs).") in why
    assert "True and false positive rates" not in why


def test_why_this_verdict__a_passing_run_says_so(tmp_path):
    outcome = RuleOutcome("r", "performance", "accuracy", "block", "pass", 0.9, "", ">= 0.5", "ok")
    docs = rendered(make_run(tmp_path, outcome=Decision((outcome,))))
    why = section(docs["model_card.md"], "Why this verdict")
    assert "The release passes: every blocking rule of the policy default held." in why
    assert '<section id="why-this-verdict" class="why why-pass">' in docs["model_card.html"]


# ---------------------------------------------------------------- small groups


def test_fairness__groups_left_out_of_the_gaps_are_named_with_their_sizes(tmp_path):
    base = fairness_result({"sex": ["Female", "Male"], "race": ["White", "Black", "Other"]})
    small = Measurement("fairness", "groups_insufficient_data", 2.0, "race", n=7, details={
        "min_group_size": 30, "groups": {"race=Other": 12, "race=Black": 7}})
    run = make_run(tmp_path, results=[performance_result(),
                                      CheckResult("fairness", "measured", base.measurements + (small,))])
    docs = rendered(run)
    text = section(docs["model_card.md"], "Quantitative analyses")
    assert "Left out of the gaps above for having fewer than 30 test rows: Black (n = 7); Other (n = 12)." in text
    assert "Left out of the gaps above for having fewer than 30 test rows: Black (n = 7); Other (n = 12).</p>" in \
        docs["model_card.html"]


# ---------------------------------------------------------------- line breaks


def test_model_card__training_data_items_are_separate_lines(tmp_path):
    text = section(rendered(make_run(tmp_path))["model_card.md"], "Training data")
    assert "- Training rows: 32561; rate of the positive label: 0.2408\n- Rows read by self-supervised" in text


# ---------------------------------------------------------------- datasheet


def test_datasheet__supplied_answers_are_kept_attributed_to_the_owners_with_the_derived_figure_beside(tmp_path):
    run = make_run(tmp_path)
    answers = tmp_path / "answers.yaml"
    answers.write_text("distribution.04: Internal use only, no fees.\n")
    run.plan["dataset"] = {"datasheet": str(answers), "personal_data": ["name", "email"]}
    context = datasheet_context(run)
    got = {q["id"]: q for s in context["sections"] for q in s["questions"]}
    assert got["distribution.04"]["origin"] == "supplied"
    assert got["distribution.04"]["answer"] == "Internal use only, no fees."
    assert got["distribution.04"]["derived_too"] == "Licence: CC BY 4.0."
    assert got["composition.15"]["answer"] == (
        "The plan treats sex, race as sensitive attributes. It declares name, email as columns holding personal data.")
    render(run, Path(run.out_dir))
    text = (Path(run.out_dir) / "datasheet.md").read_text()
    assert "**1 supplied** by Model Risk Team (`answers.yaml`)" in text
    assert "Internal use only, no fees.\n\nFrom the audited data: Licence: CC BY 4.0.\n" in text
    run.plan["model_card"]["owners"] = []
    assert datasheet_context(run)["supplied_by"] == "the plan's authors"


# ---------------------------------------------------------------- chart


def robustness_result() -> CheckResult:
    return CheckResult("robustness", "measured", (
        Measurement("robustness", "clean_accuracy", 0.85, "", 0.8, 0.9, 300),))


def test_chart__the_card_links_the_robustness_chart_when_the_run_folder_has_it(tmp_path):
    run = make_run(tmp_path, results=[performance_result(), robustness_result()])
    (Path(run.out_dir) / "robustness.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    docs = rendered(run)
    assert "](robustness.svg)" in docs["model_card.md"] and "![" in docs["model_card.md"]
    assert '<a href="robustness.svg"><img src="robustness.svg"' in docs["model_card.html"]
    elsewhere = tmp_path / "again"
    elsewhere.mkdir()
    render(run, elsewhere, formats=("md",))
    assert "](../out/robustness.svg)" in (elsewhere / "model_card.md").read_text()


def test_chart__no_chart_no_link(tmp_path):
    run = make_run(tmp_path, results=[performance_result(), robustness_result()])
    docs = rendered(run)
    assert "robustness.svg" not in docs["model_card.md"] and "<img" not in docs["model_card.html"]


def test_line_chart_svg__matplotlib_svg_is_reproducible_and_escapes_labels():
    from xml.etree import ElementTree

    from govssl.checks._art import line_chart_svg

    panels = {"PGD": {"all test rows": [(0.0, 0.85), (0.1, 0.5)], f"sex={SCRIPT} (n=3)": [(0.0, 0.6), (0.1, 0.2)]}}
    first = line_chart_svg("Accuracy under attack", "eps", "accuracy", panels)
    assert first == line_chart_svg("Accuracy under attack", "eps", "accuracy", panels)
    root = ElementTree.fromstring(first.encode())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert not any(el.tag.endswith("script") for el in root.iter())
    assert "<script" not in first and "<dc:date>" not in first
    assert "<!-- all test rows -->" in first and "Matplotlib" in first
