"""Rendering a hand-built audit run into the model card, the RMF report and evidence.json."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from govssl.checks.base import CheckResult, Measurement
from govssl.errors import ConfigError, TemplateError
from govssl.policy.model import Decision, RuleOutcome
from govssl.records import Artifact, AuditRun, DatasetSummary, TrainRecord
from govssl.reports import (
    ALL_FORMATS,
    DP_COVERAGE,
    END_TO_END_DP,
    FORMATS,
    NO_DP,
    UNKNOWN_FORMAT,
    model_card_context,
    privacy_statement,
    render,
    rmf_report_context,
)
from govssl.reports._context import fairness_tables
from govssl.rmf import CHECK_RMF, FUNCTIONS, UNKNOWN_SUBCATEGORY, load_catalog

HEAD_DP = {
    "epsilon": 2.9871,
    "delta": 1e-5,
    "accountant": "rdp",
    "noise_multiplier": 1.137,
    "sample_rate": 0.07863,
    "steps": 254,
    "max_grad_norm": 1.0,
}
FILES = (
    "model_card.md",
    "rmf_report.md",
    "datasheet.md",
    "annex_iv.md",
    "model_card.html",
    "rmf_report.html",
    "datasheet.html",
    "annex_iv.html",
    "model_card.json",
    "evidence.json",
)
KINDS = (
    "model_card", "rmf_report", "datasheet", "annex_iv", "model_card_html", "rmf_report_html", "datasheet_html",
    "annex_iv_html", "model_card_json", "evidence",
)
SUBCATEGORY_HEADING = re.compile(r"^#### ((?:GOVERN|MAP|MEASURE|MANAGE) \d+\.\d+): ([\w ,]+)$", re.M)
MET, FAILED, UNGATED = "evidenced, meets policy", "evidenced, fails policy", "evidenced, not gated by the policy"
RMF_ORDER = (MET, FAILED, UNGATED, "attested", "open")


# ---------------------------------------------------------------- a realistic run, by hand


def adult_summary(name: str = "adult", sensitive=("sex", "race")) -> DatasetSummary:
    return DatasetSummary(
        name=name,
        source="UCI Machine Learning Repository",
        license="CC BY 4.0",
        citation="Becker, B. and Kohavi, R. (1996). Adult. doi:10.24432/C5XW20",
        target="income",
        positive_label=">50K",
        sensitive=tuple(sensitive),
        numeric_features=(
            "age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week",
        ),
        categorical_features=(
            "workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
            "native-country",
        ),
        n_train=32561,
        n_test=16281,
        positive_rate_train=0.2408,
        positive_rate_test=0.2362,
        files=({"path": "adult.data.gz", "sha256": "ab" * 32, "size": 1_012_345},),
        missing={"workclass": 2799, "occupation": 2809, "native-country": 857, "age": 0},
    )


def train_record(model: Path, dp: dict | None, scope: str, end_to_end: bool) -> TrainRecord:
    return TrainRecord(
        method="scarf",
        finetune_mode="linear_probe" if scope == "head" else "fine_tune",
        label_fraction=0.1,
        n_pretrain_rows=32561,
        n_labelled_rows=3256,
        pretrain_epochs=10,
        finetune_epochs=20,
        dp_scope=scope,
        end_to_end_dp=end_to_end,
        dp=dp,
        model_path=str(model),
        model_sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
        architecture="MLP encoder [256, 256] + linear head",
        n_parameters=70_018,
        seed=7,
        seconds=41.23,
        history={"pretrain_loss": [5.1, 4.2, 3.9]},
    )


def performance_result() -> CheckResult:
    m = lambda metric, value, lo, hi: Measurement(  # noqa: E731
        "performance", metric, value, "", lo, hi, 16281, {"method": "bootstrap", "resamples": 200}
    )
    return CheckResult(
        "performance",
        "measured",
        (
            m("accuracy", 0.847312, 0.8417, 0.8528),
            m("balanced_accuracy", 0.7731, 0.7652, 0.7809),
            m("f1", 0.6521, 0.6402, 0.6637),
            m("roc_auc", 0.90118, 0.8963, 0.9058),
        ),
        seconds=1.7,
    )


def fairness_result(groups: dict[str, list[str]] | None = None) -> CheckResult:
    groups = groups or {"sex": ["Female", "Male"], "race": ["White", "Black", "Asian-Pac-Islander"]}
    rows = []
    for attribute, values in groups.items():
        for i, value in enumerate(values):
            subject = f"{attribute}={value}"
            n = 5000 + 11 * i
            rate = 0.11 + 0.07 * i
            rows += [
                Measurement("fairness", "count", n, subject),
                Measurement(
                    "fairness", "selection_rate", rate, subject, rate - 0.01, rate + 0.01, n
                ),
                Measurement("fairness", "true_positive_rate", 0.52 + 0.05 * i, subject, n=900 + i),
                Measurement("fairness", "false_positive_rate", 0.03 + 0.02 * i, subject, n=n - 900),
                Measurement("fairness", "accuracy", 0.9 - 0.03 * i, subject, n=n),
            ]
    (a, a_values), (b, b_values) = list(groups.items())[:2]
    intersection = f"{a}*{b}"
    first_pair = f"{a}={a_values[0]}*{b}={b_values[0]}"
    rows += [
        Measurement("fairness", "selection_rate", 0.081, first_pair, n=4321),
        Measurement("fairness", "count", 4321, first_pair),
    ]
    for subject in (*groups, intersection):
        rows += [
            Measurement(
                "fairness", "demographic_parity_difference", 0.1965, subject, 0.1841, 0.2087, 16281
            ),
            Measurement(
                "fairness",
                "demographic_parity_ratio",
                float("nan") if subject == intersection else 0.3562,
                subject,
                n=16281,
            ),
            Measurement(
                "fairness", "equalized_odds_difference", 0.0921, subject, 0.0712, 0.1342, 16281
            ),
        ]
    return CheckResult("fairness", "measured", tuple(rows), seconds=0.9)


def decision(fairness_rmf=("MEASURE 2.11",), worst_group: str = "sex*race") -> Decision:
    return Decision(
        (
            RuleOutcome(
                "performance-min-accuracy", "performance", "accuracy", "block", "pass", 0.8417, "",
                ">= 0.8 (ci_low)", "accuracy ci_low 0.8417 >= 0.8", ("MEASURE 2.5", "MANAGE 1.1"),
            ),
            RuleOutcome(
                "fairness-equalized-odds", "fairness", "equalized_odds_difference", "block", "fail",
                0.1342, worst_group, "<= 0.1 (ci_high)",
                f"equalized_odds_difference ci_high 0.1342 > 0.1 for {worst_group}",
                tuple(fairness_rmf),
            ),
            RuleOutcome(
                "fairness-demographic-parity", "fairness", "demographic_parity_difference", "warn",
                "fail", 0.2087, "sex", "<= 0.2 (ci_high)",
                "demographic_parity_difference 0.2087 > 0.2",
                ("MAP 2.3",),
            ),
            RuleOutcome(
                "robustness-pgd", "robustness", "adversarial_accuracy", "block", "missing", None,
                "", ">= 0.5", "the robustness check errored", ("MEASURE 2.7",),
            ),
        )
    )


def make_run(
    tmp_path: Path,
    *,
    dp: dict | None = None,
    scope: str = "none",
    end_to_end: bool = False,
    card: dict | None = None,
    dataset: DatasetSummary | None = None,
    results: list[CheckResult] | None = None,
    outcome: Decision | None = None,
) -> AuditRun:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"\x00\x01 not really a model, but real bytes with a real hash")
    predictions = tmp_path / "predictions.csv"
    predictions.write_text("row,score\n0,0.91\n1,0.12\n")
    out = tmp_path / "out"
    out.mkdir()
    model_card = {
        "name": "adult-income-scarf",
        "version": "1.2.0",
        "overview": "Predicts whether yearly income exceeds 50K USD from census attributes.",
        "owners": [{"name": "Model Risk Team", "contact": "mrt@example.org"}],
        "license": "apache-2.0",
        "intended_use": "Research on fair and private tabular classification.",
        "intended_users": ["ML researchers"],
        "out_of_scope_uses": ["Credit, hiring or housing decisions about individuals"],
        "limitations": ["Census data from 1994; distributions have shifted since."],
        "ethical_considerations": [
            {"name": "Historical bias by sex and race", "mitigation": "Gate on equalized odds"}
        ],
        "references": ["https://archive.ics.uci.edu/dataset/2/adult"],
    }
    model_card.update(card or {})
    return AuditRun(
        run_id="20250101T120000Z-3f9c2a",
        created_at="2025-01-01T12:00:00Z",
        govssl_version="0.1.0",
        plan_name="adult-income",
        plan_path="audits/adult-income.yaml",
        plan_sha256="cd" * 32,
        plan={"name": "adult-income", "model_card": model_card},
        policy_name="default",
        policy_version=1,
        policy_path="policies/default.yaml",
        policy_sha256="ef" * 32,
        dataset=dataset or adult_summary(),
        training=train_record(model, dp, scope, end_to_end),
        results=results
        if results is not None
        else [
            performance_result(),
            fairness_result(),
            CheckResult("robustness", "errored", (), "RuntimeError: PGD diverged at eps=0.05", 0.2),
        ],
        decision=outcome or decision(),
        out_dir=str(out),
        artifacts=[Artifact.of("model", model), Artifact.of("predictions", predictions)],
        seconds=63.5,
    )


def attestation(subcategory: str, by: str, statement: str) -> dict:
    return {"subcategory": subcategory, "by": by, "date": "2025-01-02", "statement": statement}


def rendered(run: AuditRun, **kwargs) -> dict[str, str]:
    render(run, Path(run.out_dir), **kwargs)
    return {name: (Path(run.out_dir) / name).read_text(encoding="utf-8") for name in FILES}


def front_matter_of(text: str) -> dict:
    match = re.match(r"\A---\n(.*?)\n---\n", text, re.S)
    assert match, "model_card.md must start with YAML front matter"
    return yaml.safe_load(match.group(1))


def section(text: str, heading: str) -> str:
    """The body of one ``## heading`` section."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section {heading!r}"
    return match.group(1)


# ---------------------------------------------------------------- files and artifacts


def test_render__writes_every_document_with_matching_artifacts(tmp_path):
    run = make_run(tmp_path)
    artifacts = render(run, Path(run.out_dir))
    assert [a.kind for a in artifacts] == list(KINDS)
    for artifact, name in zip(artifacts, FILES):
        path = Path(run.out_dir) / name
        assert Path(artifact.path) == path.resolve()
        assert artifact.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert artifact.size == path.stat().st_size
    assert sorted(p.name for p in Path(run.out_dir).iterdir()) == sorted(FILES)


@pytest.mark.parametrize(
    "formats, files",
    [
        (("md",), ["model_card.md", "rmf_report.md", "datasheet.md", "annex_iv.md"]),
        (("html",), ["model_card.html", "rmf_report.html", "datasheet.html", "annex_iv.html"]),
        (("json",), ["model_card.json", "evidence.json"]),
        (
            ("json", "md", "md"),
            ["model_card.md", "rmf_report.md", "datasheet.md", "annex_iv.md", "model_card.json", "evidence.json"],
        ),
        ((), []),
    ],
)
def test_render__formats_select_the_documents(tmp_path, formats, files):
    run = make_run(tmp_path)
    artifacts = render(run, Path(run.out_dir), formats=formats)
    assert [Path(a.path).name for a in artifacts] == files
    assert sorted(p.name for p in Path(run.out_dir).iterdir()) == sorted(files)


@pytest.mark.parametrize("formats", [("md", "docx"), ("HTML",), "odt"])
def test_render__unknown_format_is_a_value_error_naming_it(tmp_path, formats):
    run = make_run(tmp_path)
    bad = next(f for f in ([formats] if isinstance(formats, str) else formats) if f not in ALL_FORMATS)
    with pytest.raises(ValueError) as info:
        render(run, Path(run.out_dir), formats=formats)
    assert str(info.value) == UNKNOWN_FORMAT.format(format=bad, choices="md, html, json, pdf")
    assert list(Path(run.out_dir).iterdir()) == []


def test_render__does_not_change_the_run(tmp_path):
    run = make_run(tmp_path)
    before = copy.deepcopy(run.to_dict())
    render(run, Path(run.out_dir))
    assert run.to_dict() == before


# ---------------------------------------------------------------- model card


def test_model_card__front_matter_has_hugging_face_metadata(tmp_path):
    fm = front_matter_of(rendered(make_run(tmp_path))["model_card.md"])
    assert fm["license"] == "apache-2.0"
    assert fm["library_name"] == "pytorch"
    assert fm["tags"] == ["govssl", "tabular-classification", "self-supervised"]
    assert fm["datasets"] == ["adult"]
    assert fm["metrics"] == ["accuracy", "balanced_accuracy", "f1", "roc_auc"]
    [entry] = fm["model-index"]
    assert entry["name"] == "adult-income-scarf"
    [result] = entry["results"]
    assert result["task"] == {"type": "tabular-classification"}
    assert result["dataset"] == {"type": "adult", "name": "adult"}
    assert result["metrics"] == [
        {"type": "accuracy", "value": 0.847312},
        {"type": "balanced_accuracy", "value": 0.7731},
        {"type": "f1", "value": 0.6521},
        {"type": "roc_auc", "value": 0.90118},
    ]


def test_model_card__front_matter_tags_differential_privacy(tmp_path):
    run = make_run(tmp_path, dp=HEAD_DP, scope="head")
    assert "differential-privacy" in front_matter_of(rendered(run)["model_card.md"])["tags"]


def test_model_card__front_matter_stays_yaml_with_hostile_names(tmp_path):
    run = make_run(
        tmp_path,
        card={"license": "other: [x]\n---"},
        dataset=adult_summary(name="adult\n---\nlicense: mit"),
    )
    fm = front_matter_of(rendered(run)["model_card.md"])
    assert fm["license"] == "other: [x]\n---"
    assert fm["datasets"] == ["adult\n---\nlicense: mit"]


def test_model_card__has_the_sections_of_mitchell_et_al(tmp_path):
    text = rendered(make_run(tmp_path))["model_card.md"]
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == [
        "Why this verdict",
        "Model details",
        "Intended use",
        "Factors",
        "Metrics",
        "Evaluation data",
        "Training data",
        "Quantitative analyses",
        "Release decision",
        "Differential privacy",
        "Ethical considerations",
        "Caveats and recommendations",
    ]
    assert "Model Cards for Model Reporting" in text
    assert "doi:10.1145/3287560.3287596" in text


def test_model_card__model_details_and_data(tmp_path):
    run = make_run(tmp_path)
    text = rendered(run)["model_card.md"]
    details = section(text, "Model details")
    assert "Model Risk Team (mrt@example.org)" in details
    assert "70018 parameters" in details
    assert "scarf, 10 epoch(s) on 32561 unlabelled rows" in details
    assert "label fraction 0.1" in details
    assert run.training.model_sha256 in details
    assert "seed: 7" in details
    assert "Test rows: 16281" in section(text, "Evaluation data")
    training = section(text, "Training data")
    assert "Training rows: 32561" in training
    assert "`workclass` 2799" in training and "`age` 0" not in training


def test_model_card__quantitative_analyses_show_figures_with_intervals(tmp_path):
    text = section(rendered(make_run(tmp_path))["model_card.md"], "Quantitative analyses")
    assert "| `accuracy` | all test rows | 0.8473 | [0.8417, 0.8528] | 16281 |" in text
    assert "| `roc_auc` | all test rows | 0.9012 | [0.8963, 0.9058] | 16281 |" in text
    for attribute in ("`sex`", "`race`", "`sex*race`"):
        assert f"#### {attribute}\n" in text
    header = (
        "| group | `count` | `selection_rate` | `true_positive_rate` | `false_positive_rate` "
        "| `accuracy` |"
    )
    assert text.count(header) == 2
    assert "| group | `count` | `selection_rate` |\n" in text
    assert "| Female | 5000 | 0.11 [0.1, 0.12] | 0.52 | 0.03 | 0.9 |" in text
    assert "| Male | 5011 | 0.18 [0.17, 0.19] | 0.57 | 0.05 | 0.87 |" in text
    assert "| Female, White | 4321 | 0.081 |\n" in text
    assert "| `equalized_odds_difference` | 0.0921 | [0.07120, 0.1342] | 16281 |" not in text
    assert "| `equalized_odds_difference` | 0.0921 | [0.0712, 0.1342] | 16281 |" in text
    assert "| `demographic_parity_ratio` | nan |  | 16281 |" in text


def test_model_card__release_decision_lists_every_outcome(tmp_path):
    text = section(rendered(make_run(tmp_path))["model_card.md"], "Release decision")
    assert "**BLOCKED**" in text
    assert (
        "| `fairness-equalized-odds` | fail (blocking) | block | 0.1342 | sex*race "
        "| <= 0.1 (ci_high) |"
        in text
    )
    assert "| `performance-min-accuracy` | pass | block | 0.8417 |  | >= 0.8 (ci_low) |" in text
    assert "| `robustness-pgd` | missing (blocking) | block | n/a |" in text


def test_model_card__caveats_list_limitations_and_failed_checks(tmp_path):
    text = section(rendered(make_run(tmp_path))["model_card.md"], "Caveats and recommendations")
    assert "- Census data from 1994; distributions have shifted since." in text
    assert "The robustness check errored and produced no evidence: RuntimeError: PGD" in text
    assert "Rule robustness-pgd could not be evaluated" in text


def test_model_card__waiver_is_visible(tmp_path):
    waived = RuleOutcome(
        "fairness-equalized-odds", "fairness", "equalized_odds_difference", "block", "waived",
        0.1342, "sex*race", "<= 0.1 (ci_high)", "0.1342 > 0.1",
        ("MEASURE 2.11",), {"approver": "J. Doe", "reason": "pilot only", "expires": "2025-03-01"},
    )
    run = make_run(tmp_path, outcome=Decision((waived,)))
    docs = rendered(run)
    assert "approver: J. Doe; reason: pilot only; expires: 2025-03-01" in docs["model_card.md"]
    assert "approver: J. Doe" in docs["rmf_report.md"]
    assert "**PASS**" in docs["model_card.md"]


# ---------------------------------------------------------------- user text is data


@pytest.mark.parametrize("payload", ["{{ 7*7 }}", "{% for x in y %}"])
def test_render__user_text_is_never_template_code(tmp_path, payload):
    run = make_run(
        tmp_path,
        card={
            "intended_use": f"BEGIN {payload} END",
            "limitations": [f"LIMIT {payload} END"],
            "name": f"NAME {payload}",
        },
        dataset=adult_summary(name=f"data {payload}"),
        results=[
            performance_result(),
            fairness_result({"sex": [payload, "Male"], "race": ["White", "Black"]}),
            CheckResult("robustness", "errored", (), f"ValueError: {payload}"),
        ],
        outcome=decision(worst_group=f"sex={payload}"),
    )
    docs = rendered(run)
    card, report = docs["model_card.md"], docs["rmf_report.md"]
    for text in (card, report):
        assert f"BEGIN {payload} END" in text
        assert f"LIMIT {payload} END" in text
        assert f"ValueError: {payload}" in text
        assert f"sex={payload}" in text
        assert "BEGIN 49 END" not in text and "BEGIN  END" not in text
    assert f"| {payload} | 5000 |" in card
    assert f"# Model card: NAME {payload}" in card
    assert front_matter_of(card)["datasets"] == [f"data {payload}"]


def test_render__markdown_is_not_html_escaped(tmp_path):
    run = make_run(tmp_path, card={"intended_use": "Scores <50K & >50K earners; \"quoted\" 'text'"})
    docs = rendered(run)
    assert "Scores <50K & >50K earners; \"quoted\" 'text'" in docs["model_card.md"]
    assert "&lt;" not in docs["model_card.md"] and "&amp;" not in docs["rmf_report.md"]


# ---------------------------------------------------------------- differential privacy honesty


def test_privacy__head_only_dp_never_claims_end_to_end(tmp_path):
    run = make_run(tmp_path, dp=HEAD_DP, scope="head", end_to_end=False)
    docs = rendered(run)
    for text in (docs["model_card.md"], docs["rmf_report.md"]):
        assert "end-to-end" not in text.lower() and "end to end" not in text.lower()
        assert "the classification head was trained under DP-SGD; the encoder was not" in text
        assert (
            "The encoder was pretrained with scarf on the same private training rows "
            "(32561 rows) without differential privacy." in text
        )
        assert "No differential-privacy guarantee holds for the training data as a whole." in text
        assert NO_DP not in text


def test_privacy__head_only_dp_reports_the_accountant_figures(tmp_path):
    run = make_run(tmp_path, dp=HEAD_DP, scope="head")
    text = section(rendered(run)["model_card.md"], "Differential privacy")
    for row in (
        "| epsilon (ε) | 2.987 |",
        "| delta (δ) | 1e-05 |",
        "| accountant | rdp |",
        "| noise multiplier | 1.137 |",
        "| sample rate | 0.07863 |",
        "| steps | 254 |",
        "| max grad norm (per-sample clipping) | 1 |",
    ):
        assert row in text


def test_privacy__missing_dp_keys_are_left_out(tmp_path):
    run = make_run(tmp_path, dp={"epsilon": 3.0, "delta": 1e-5}, scope="finetune")
    text = section(rendered(run)["model_card.md"], "Differential privacy")
    assert "| epsilon (ε) | 3 |" in text
    assert "noise multiplier" not in text and "accountant" not in text
    assert "the supervised fine-tuning phase (encoder and head) was trained under DP-SGD" in text
    assert "end-to-end" not in text


def test_privacy__no_dp_says_so(tmp_path):
    docs = rendered(make_run(tmp_path))
    for text in (docs["model_card.md"], docs["rmf_report.md"]):
        assert "not trained with differential privacy" in text
        assert "epsilon" not in text.lower()
    assert NO_DP in section(docs["model_card.md"], "Differential privacy")


def test_privacy__end_to_end_dp_is_stated_when_true(tmp_path):
    run = make_run(tmp_path, dp=HEAD_DP, scope="finetune", end_to_end=True)
    statement = privacy_statement(run.training)
    assert statement["end_to_end"] and statement["headline"] == END_TO_END_DP
    text = section(rendered(run)["model_card.md"], "Differential privacy")
    assert END_TO_END_DP in text
    # and says what it does not cover
    assert DP_COVERAGE in text and "baseline" in text and "Preprocessing" in text


def test_privacy__dp_none_wins_over_contradictory_flags(tmp_path):
    run = make_run(tmp_path, dp=None, scope="head", end_to_end=True)
    statement = privacy_statement(run.training)
    assert statement["private"] is False and statement["headline"] == NO_DP


# ---------------------------------------------------------------- RMF report


def rmf_entries(text: str) -> list[tuple[str, str]]:
    return SUBCATEGORY_HEADING.findall(text)


def rmf_counts(text: str) -> dict[str, tuple[int, ...]]:
    """Per function: (meets policy, fails policy, not gated, attested, open, total)."""
    rows = re.findall(r"^\| (GOVERN|MAP|MEASURE|MANAGE|all)((?: \| \d+){6}) \|$", text, re.M)
    return {name: tuple(int(x) for x in numbers.split(" | ")[1:]) for name, numbers in rows}


def test_rmf_report__lists_all_72_subcategories_in_catalog_order(tmp_path):
    text = rendered(make_run(tmp_path))["rmf_report.md"]
    entries = rmf_entries(text)
    assert [sid for sid, _ in entries] == [s.id for s in load_catalog()]
    assert len(entries) == 72
    for sub in load_catalog():
        assert f"> {sub.text}\n" in text
    assert "doi:10.6028/NIST.AI.100-1" in text


def test_rmf_report__counts_agree_with_the_entries(tmp_path):
    attestations = [
        attestation("GOVERN 1.1", "Legal", "Reviewed."),
        attestation("MEASURE 2.11", "Ethics board", "Seen."),
    ]
    text = rendered(make_run(tmp_path), attestations=attestations)["rmf_report.md"]
    entries = rmf_entries(text)
    function_of = {s.id: s.function for s in load_catalog()}
    counts = rmf_counts(text)
    for function in FUNCTIONS:
        statuses = [status for sid, status in entries if function_of[sid] == function]
        expected = tuple(statuses.count(s) for s in RMF_ORDER)
        assert counts[function] == (*expected, len(statuses))
    statuses = [status for _, status in entries]
    expected = tuple(statuses.count(s) for s in RMF_ORDER)
    assert counts["all"] == (*expected, 72)
    assert counts["GOVERN"] == (0, 0, 0, 1, 18, 19)


def test_rmf_report__fairness_rule_evidences_measure_2_11(tmp_path):
    run = make_run(tmp_path, results=[performance_result()])  # no fairness check: the rule alone
    context = rmf_report_context(run)
    sub = next(
        s for f in context["functions"] for c in f["categories"] for s in c["subcategories"]
        if s["id"] == "MEASURE 2.11"
    )
    assert sub["status"] == "failed"  # the rule is evidence, and it failed
    assert [r["rule_id"] for r in sub["rules"]] == ["fairness-equalized-odds"]
    assert sub["checks"] == []
    text = rendered(run)["rmf_report.md"]
    assert ("MEASURE 2.11", FAILED) in rmf_entries(text)
    block = text.split(f"#### MEASURE 2.11: {FAILED}", 1)[1].split("####", 1)[0]
    assert "`fairness-equalized-odds`: fail (block); observed 0.1342 for `sex*race`" in block
    assert "threshold <= 0.1 (ci_high)" in block


def test_rmf_report__evidence_from_rules_and_mapped_checks(tmp_path):
    entries = dict(rmf_entries(rendered(make_run(tmp_path))["rmf_report.md"]))
    evidenced = {sid for sid, status in entries.items() if status.startswith("evidenced")}
    # the rules name these four; the measured performance and fairness checks map via CHECK_RMF
    expected = {"MEASURE 2.5", "MANAGE 1.1", "MEASURE 2.11", "MAP 2.3"}
    expected |= set(CHECK_RMF["performance"]) | set(CHECK_RMF["fairness"])
    assert evidenced == expected
    # a passing rule meets the policy; a failing one (block or warn) fails it; a measured check
    # that no rule names is evidence the policy does not gate
    assert entries["MEASURE 2.5"] == entries["MANAGE 1.1"] == MET
    assert entries["MEASURE 2.11"] == entries["MAP 2.3"] == FAILED
    assert entries["MEASURE 2.3"] == entries["MEASURE 2.1"] == UNGATED


def test_rmf_report__errored_check_and_missing_rule_are_no_evidence(tmp_path):
    text = rendered(make_run(tmp_path))["rmf_report.md"]
    assert ("MEASURE 2.7", "open") in rmf_entries(text)
    block = text.split("#### MEASURE 2.7: open", 1)[1].split("####", 1)[0]
    assert "`robustness-pgd`: missing (the robustness check errored)" in block
    assert "robustness: errored: RuntimeError: PGD diverged at eps=0.05" in block


def test_rmf_report__mapped_check_shows_aggregate_measurements(tmp_path):
    text = rendered(make_run(tmp_path))["rmf_report.md"]
    block = text.split(f"#### MEASURE 2.11: {FAILED}", 1)[1].split("####", 1)[0]
    assert "fairness (" in block
    assert "`equalized_odds_difference` for `sex` = 0.0921 [0.0712, 0.1342] (n = 16281)" in block
    assert "sex=Female" not in block
    perf = text.split(f"#### MEASURE 2.3: {UNGATED}", 1)[1].split("####", 1)[0]
    assert "`accuracy` = 0.8473 [0.8417, 0.8528] (n = 16281)" in perf


def test_rmf_report__attestation_marks_attested(tmp_path):
    attested = attestation("GOVERN 1.1", "Legal", "Laws reviewed.")
    text = rendered(make_run(tmp_path), attestations=[attested])["rmf_report.md"]
    assert ("GOVERN 1.1", "attested") in rmf_entries(text)
    assert "- Legal, 2025-01-02: Laws reviewed." in text


def test_rmf_report__invalid_attestation_is_a_config_error(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(ConfigError) as info:
        render(
            run, Path(run.out_dir), attestations=[attestation("MEASURE 9.9", "x", "s"), {"by": "x"}]
        )
    message = str(info.value)
    assert "attestations[0].subcategory: " + UNKNOWN_SUBCATEGORY.format(id="MEASURE 9.9") in message
    assert "attestations[1]: missing subcategory, date, statement" in message
    assert list(Path(run.out_dir).iterdir()) == []


def test_rmf_report__unknown_rule_ids_are_named_not_counted(tmp_path):
    outcome = RuleOutcome(
        "r", "performance", "accuracy", "warn", "pass", 0.9, "", ">= 0.5", "ok", ("MEASURE 9.9",)
    )
    text = rendered(make_run(tmp_path, outcome=Decision((outcome,))))["rmf_report.md"]
    assert "`MEASURE 9.9`" in text
    assert rmf_counts(text)["all"][5] == 72


# ---------------------------------------------------------------- templates


def test_render__user_template_folder_overrides_a_template(tmp_path):
    mine = tmp_path / "my-templates"
    mine.mkdir()
    (mine / "model_card.md.j2").write_text("CUSTOM {{ card.name }} {{ decision.verdict }}\n")
    run = make_run(tmp_path)
    docs = rendered(run, template_dir=mine)
    assert docs["model_card.md"] == "CUSTOM adult-income-scarf blocked\n"
    assert len(rmf_entries(docs["rmf_report.md"])) == 72


@pytest.mark.parametrize(
    "name, source, line",
    [
        ("model_card.md.j2", "# card\n\n{% if %}\n", 3),
        ("model_card.md.j2", "# card\n{{ no_such_value }}\n", 2),
        ("model_card.md.j2", "ok\nok\n{{ card.__class__.__mro__ }}\n", 3),
        ("model_card.md.j2", "{% include 'not-there.md.j2' %}\n", 1),
        ("rmf_report.md.j2", "{% for x in functions %}\n{{ x.nope.deeper }}\n{% endfor %}\n", 2),
        (
            "model_card.html.j2",
            "{% extends '_base.html.j2' %}\n{% block body %}\n{{ card.nope }}\n{% endblock %}\n",
            3,
        ),
    ],
)
def test_render__broken_user_template_raises_and_writes_nothing(tmp_path, name, source, line):
    mine = tmp_path / "my-templates"
    mine.mkdir()
    (mine / name).write_text(source)
    run = make_run(tmp_path)
    with pytest.raises(TemplateError) as info:
        render(run, Path(run.out_dir), template_dir=mine)
    assert info.value.exit_code == 2
    assert str(mine / name) in str(info.value)
    assert f"line {line}" in str(info.value)
    assert list(Path(run.out_dir).iterdir()) == []


def test_render__missing_template_folder_is_a_template_error(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(TemplateError, match="template folder not found"):
        render(run, Path(run.out_dir), template_dir=tmp_path / "nope")


def test_render__html_templates_are_autoescaped_markdown_not(tmp_path):
    from govssl.reports._jinja import environment, render_template

    (tmp_path / "x.html.j2").write_text("{{ v }}")
    (tmp_path / "x.md.j2").write_text("{{ v }}")
    env = environment(tmp_path)
    assert render_template(env, "x.html.j2", {"v": "<b>&"}) == "&lt;b&gt;&amp;"
    # Markdown is not HTML-escaped: only what could open raw HTML, an entity or a link changes
    assert render_template(env, "x.md.j2", {"v": "a <= b & c"}) == "a <= b & c"
    assert render_template(env, "x.md.j2", {"v": "<b>&amp;[x](y)"}) == "&lt;b>&amp;amp;[x]\\(y)"


# ---------------------------------------------------------------- evidence.json


def test_evidence__parses_and_equals_the_run_with_non_finite_as_text(tmp_path):
    run = make_run(tmp_path)
    expected = copy.deepcopy(run.to_dict())
    n_replaced = 0
    for check in expected["checks"]:
        for m in check["measurements"]:
            if isinstance(m["value"], float) and math.isnan(m["value"]):
                m["value"] = "nan"
                n_replaced += 1
    assert n_replaced == 1
    text = rendered(run)["evidence.json"]
    assert json.loads(text) == json.loads(json.dumps(expected, allow_nan=False))
    assert [a["kind"] for a in json.loads(text)["artifacts"]] == ["model", "predictions"]


def test_evidence__inf_in_details_becomes_text(tmp_path):
    perf = CheckResult(
        "performance", "measured",
        (Measurement("performance", "log_loss", math.inf, details={"bounds": [-math.inf, 1.0]}),),
    )
    run = make_run(tmp_path, results=[perf])
    data = json.loads(rendered(run)["evidence.json"])
    m = data["checks"][0]["measurements"][0]
    assert m["value"] == "inf" and m["details"]["bounds"] == ["-inf", 1.0]


def test_model_card_context__is_plain_data(tmp_path):
    run = make_run(tmp_path, dp=HEAD_DP, scope="head")
    context = model_card_context(run)
    json.dumps(context, allow_nan=True)  # only dicts, lists, strings, numbers
    assert context["privacy"]["end_to_end"] is False
    json.dumps(rmf_report_context(run))


@pytest.mark.parametrize(
    "subject, attribute, group",
    [
        ("sex=Female", "sex", "Female"),
        ("sex=Female*race=White", "sex*race", "Female, White"),
        ("sex=a*b=c", "sex", "a*b=c"),
        ("sex=F*race=W=x", "sex*race", "F, W=x"),
        ("age band=18-25", "age band", "18-25"),
    ],
)
def test_fairness_tables__split_subjects_by_known_attributes(subject, attribute, group):
    result = CheckResult(
        "fairness",
        "measured",
        (
            Measurement("fairness", "equalized_odds_difference", 0.1, "sex"),
            Measurement("fairness", "equalized_odds_difference", 0.2, "sex*race"),
            Measurement("fairness", "accuracy", 0.8, subject),
        ),
    )
    tables = {t["attribute"]: t for t in fairness_tables(result, ("sex", "race"))}
    assert [g["group"] for g in tables[attribute]["groups"]] == [group]
