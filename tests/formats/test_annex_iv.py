"""The EU AI Act Annex IV technical documentation, through the command line: one real audit whose
policy has a passing rule (Art. 15), a failing one (Art. 9) and one whose check the plan does
not run (Art. 14), then attestations and re-rendering."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from govssl.cli import main
from govssl.formats.annex_iv import load_articles, load_points
from tests.conftest import fast_plan_data
from tests.conftest import run_cli as cli

POLICY = {
    "policy": "annex-iv-test", "version": 1,
    "rules": [
        {"id": "auc", "check": "performance", "metric": "roc_auc", "min": 0.6, "severity": "block",
         "rmf": ["MEASURE 2.5"], "eu_ai_act": ["Art. 15"], "rationale": "Clearly better than chance."},
        {"id": "near-perfect", "check": "performance", "metric": "accuracy", "min": 0.99, "severity": "block",
         "eu_ai_act": ["Art. 9"], "rationale": "Deliberately out of reach."},
        {"id": "robust", "check": "robustness", "metric": "robust_accuracy", "min": 0.5, "severity": "warn",
         "eu_ai_act": ["Art. 14"], "rationale": "The plan does not run robustness: this figure is missing."},
    ],
}
POINT_HEADING = re.compile(r"^## (\d)\. (.+): (filled from the run, meets policy|filled from the run, fails policy|"
                           r"filled from the run, not gated by the policy|attested|open)$", re.M)
ARTICLE_HEADING = re.compile(r"^### (Art\. \d+): .+: (meets policy|fails policy|measured, not gated by the policy|"
                             r"attested|open)$", re.M)


@pytest.fixture(scope="module")
def audited(tmp_path_factory, adult_csvs):
    folder = tmp_path_factory.mktemp("annex-iv")
    policy = folder / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    (folder / "attest.yaml").write_text(yaml.safe_dump([
        {"framework": "eu-ai-act", "item": "Annex IV(6)", "by": "Release manager", "date": "2026-11-01",
         "statement": "Version 1 of the system; no earlier release."},
        {"subcategory": "GOVERN 1.1", "by": "Legal team", "date": "2026-11-01", "statement": "Applicable law reviewed."},
    ]))
    data = fast_plan_data(*adult_csvs)
    data["attestations"] = "attest.yaml"
    data["policy"] = str(policy)
    plan = folder / "plan.yaml"
    plan.write_text(yaml.safe_dump(data))
    db = f"sqlite:///{folder / 'audit.db'}"
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", str(plan), "--db", db, "--out", str(folder / "out"), "--quiet"])
    run_dir = next((folder / "out").iterdir())
    return {"db": db, "code": exit_info.value.code, "run_id": run_dir.name, "dir": run_dir, "folder": folder,
            "plan": plan}


def _sections(md: str, heading: re.Pattern) -> dict[str, tuple[str, str]]:
    """{id: (status, section text)} of each heading's section."""
    found = list(heading.finditer(md))
    out = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(md)
        if m.start() < md.find("\n## Evidence per article") < end:  # the last point ends there
            end = md.find("\n## Evidence per article")
        out[m.group(1)] = (m.group(m.lastindex), md[m.end():end])
    return out


def _copy_store(audited, tmp_path) -> str:
    import sqlite3

    source = sqlite3.connect(audited["folder"] / "audit.db")
    target = sqlite3.connect(tmp_path / "copy.db")
    source.backup(target)
    source.close()
    target.close()
    return f"sqlite:///{tmp_path / 'copy.db'}"


def test_audit__writes_annex_iv_md_and_html_as_artifacts(capsys, audited):
    assert audited["code"] == 1  # near-perfect fails and blocks
    for name in ("annex_iv.md", "annex_iv.html"):
        assert (audited["dir"] / name).is_file()
    code, out, _ = cli(capsys, "show", audited["run_id"], "--db", audited["db"], "--json")
    assert code == 0
    stored = json.loads(out)
    kinds = {a["kind"]: a for a in stored["artifacts"]}
    assert {"annex_iv", "annex_iv_html"} <= set(kinds)
    assert Path(kinds["annex_iv"]["path"]) == (audited["dir"] / "annex_iv.md").resolve()
    # the articles of each rule come back from the store exactly, apart from its NIST ids
    outcomes = {o["rule_id"]: o for o in stored["decision"]["outcomes"]}
    assert outcomes["auc"]["eu_ai_act"] == ["Art. 15"] and outcomes["auc"]["rmf"] == ["MEASURE 2.5"]
    assert outcomes["near-perfect"]["rmf"] == [] and outcomes["near-perfect"]["eu_ai_act"] == ["Art. 9"]
    code, _, _ = cli(capsys, "verify", "--db", audited["db"])
    assert code == 0


def test_annex_iv__has_the_nine_points_in_order(audited):
    md = (audited["dir"] / "annex_iv.md").read_text()
    headings = POINT_HEADING.findall(md)
    assert [int(n) for n, _, _ in headings] == list(range(1, 10))
    assert [title for _, title, _ in headings] == [p.title for p in load_points()]
    html = (audited["dir"] / "annex_iv.html").read_text()
    order = [html.index(f'<section id="point-{n}"') for n in range(1, 10)]
    assert order == sorted(order)
    articles = ARTICLE_HEADING.findall(md)
    assert [a for a, _ in articles] == [a.id for a in load_articles()]


def test_annex_iv__a_failing_rule_makes_its_article_fail_policy(audited):
    md = (audited["dir"] / "annex_iv.md").read_text()
    articles = _sections(md, ARTICLE_HEADING)
    status, text = articles["Art. 9"]
    assert status == "fails policy" and "`near-perfect`: fail" in text
    assert articles["Art. 15"][0] == "meets policy" and "`auc`: pass" in articles["Art. 15"][1]
    assert "| Art. 9 | Risk management system | fails policy |" in md
    html = (audited["dir"] / "annex_iv.html").read_text()
    art9 = html[html.index('id="Art-9"'):html.index('id="Art-10"')]
    assert "fails policy" in art9 and "meets policy" not in art9


def test_annex_iv__a_missing_check_is_not_evidence_for_its_article(audited):
    md = (audited["dir"] / "annex_iv.md").read_text()
    status, text = _sections(md, ARTICLE_HEADING)["Art. 14"]
    assert status == "fails policy"  # never "meets policy", "measured" or "attested": the figure is missing
    assert "`robust`: missing" in text and "robustness" in text


def test_annex_iv__no_point_is_marked_evidenced_by_a_failing_or_missing_figure(audited):
    md = (audited["dir"] / "annex_iv.md").read_text()
    points = _sections(md, POINT_HEADING)
    failing = re.compile(r"`[\w-]+`: (fail|missing|inconclusive|waived) ")
    reporting_failures = [n for n, (_, text) in points.items() if failing.search(text)]
    assert reporting_failures  # points 2, 3 and 5 report the failing accuracy rule
    for number in reporting_failures:
        assert points[number][0] == "filled from the run, fails policy", number
    for number, (status, _) in points.items():
        if status == "filled from the run, meets policy":
            assert not failing.search(points[number][1])


def test_annex_iv__points_are_filled_from_the_run_or_open(audited):
    md = (audited["dir"] / "annex_iv.md").read_text()
    points = _sections(md, POINT_HEADING)
    assert points["1"][0] == "filled from the run, not gated by the policy" and "intended purpose: tests" in points["1"][1]
    # development and data: the training, the data files with their sha256, the datasheet
    text = points["2"][1]
    assert "scarf" in text and "[datasheet.md](datasheet.md)" in text
    assert re.search(r"`train\.csv` \(sha256 `[0-9a-f]{64}`\)", text)
    assert "| roc_auc | all |" in points["3"][1]  # the level of accuracy, with its interval
    assert "[rmf_report.md](rmf_report.md)" in points["5"][1]  # risk management links the RMF report
    assert "Deliberately out of reach." in points["4"][1]  # why each metric: the policy's rationale
    assert points["6"][0] == "attested" and "no earlier release" in points["6"][1]  # from the plan's file
    assert "harmonised standards: none cited by govssl" in points["7"][1]
    assert points["8"][0] == "open"
    # the post-market monitoring plan is the shipped monitoring pack
    assert points["9"][0] == "filled from the run, not gated by the policy", points["9"]
    assert "drift-features" in points["9"][1] and "drift-embeddings" in points["9"][1]


def test_report__point_9_is_open_without_a_monitoring_pack(capsys, tmp_path, audited, monkeypatch):
    import govssl._resources

    shipped = govssl._resources.policies_dir()
    packs = tmp_path / "packs"
    packs.mkdir()
    for pack in shipped.glob("*.yaml"):
        if pack.name != "monitoring.yaml":
            (packs / pack.name).write_bytes(pack.read_bytes())
    monkeypatch.setattr(govssl._resources, "policies_dir", lambda: packs)
    db = _copy_store(audited, tmp_path)
    code, _, _ = cli(capsys, "report", audited["run_id"], "--out", str(tmp_path / "docs"), "--db", db, "--format", "md")
    assert code == 0
    points = _sections((tmp_path / "docs" / "annex_iv.md").read_text(), POINT_HEADING)
    assert points["9"][0] == "open" and "policies/monitoring.yaml" in points["9"][1]


def test_attest__eu_ai_act_item_turns_an_open_point_and_article_into_attested(capsys, tmp_path, audited):
    db = _copy_store(audited, tmp_path)
    run = audited["run_id"]
    for item, statement in (("Annex IV(8)", "Declaration signed on 2026-11-02."),
                            ("Art. 12", "The serving layer logs every request."),
                            ("Art. 14", "Operators can override every decision.")):
        code, out, _ = cli(capsys, "attest", "--framework", "eu-ai-act", "--run", run, "--item", item,
                           "--by", "Compliance officer", "--statement", statement, "--date", "2026-11-02", "--db", db)
        assert code == 0 and f"eu-ai-act {item}" in out
    code, _, _ = cli(capsys, "attest", "--framework", "nist-ai-rmf", "--run", run, "--item", "GOVERN 2.1",
                     "--by", "CISO", "--statement", "Roles are documented.", "--db", db)
    assert code == 0
    code, _, _ = cli(capsys, "report", run, "--out", str(tmp_path / "docs"), "--db", db)
    assert code == 0
    md = (tmp_path / "docs" / "annex_iv.md").read_text()
    points, articles = _sections(md, POINT_HEADING), _sections(md, ARTICLE_HEADING)
    assert points["8"][0] == "attested" and "Compliance officer, 2026-11-02: Declaration signed" in points["8"][1]
    assert articles["Art. 12"][0] == "attested" and "logs every request" in articles["Art. 12"][1]
    # an attestation never covers a missing figure: Art. 14 still fails, with the statement shown
    assert articles["Art. 14"][0] == "fails policy" and "override every decision" in articles["Art. 14"][1]
    html = (tmp_path / "docs" / "annex_iv.html").read_text()
    assert "Declaration signed on 2026-11-02." in html
    rmf = (tmp_path / "docs" / "rmf_report.md").read_text()
    assert "Roles are documented." in rmf and "Declaration signed" not in rmf
    code, out, _ = cli(capsys, "show", run, "--db", db, "--json")
    assert {"subcategory": "eu-ai-act:Annex IV(8)", "by": "Compliance officer", "date": "2026-11-02",
            "statement": "Declaration signed on 2026-11-02."} in json.loads(out)["attestations"]
    assert cli(capsys, "verify", "--db", db)[0] == 0


@pytest.mark.parametrize("args, fragment", [
    (["--framework", "eu-ai-act", "--item", "Art. 16"], "--item: 'Art. 16' is not an EU AI Act item"),
    (["--framework", "eu-ai-act", "--item", "Annex IV(10)"], "'Annex IV(10)'"),
    (["--framework", "nist-ai-rmf", "--item", "Art. 9"], "--item: 'Art. 9' is not a NIST AI RMF 1.0 subcategory"),
    (["--framework", "iso-42001", "--item", "Art. 9"], "--framework"),
    (["--item", "Art. 9"], "missing option(s) --framework"),
])
def test_attest__bad_requests_exit_2_and_store_nothing(capsys, tmp_path, audited, args, fragment):
    db = _copy_store(audited, tmp_path)
    code, _, err = cli(capsys, "attest", "--run", audited["run_id"], "--by", "x", "--statement", "y", *args, "--db", db)
    assert code == 2 and fragment in err
    code, out, _ = cli(capsys, "show", audited["run_id"], "--db", db, "--json")
    assert len(json.loads(out)["attestations"]) == 2  # the two from the plan's file


def test_attest__recording_options_do_not_go_with_verify(capsys, tmp_path):
    code, _, err = cli(capsys, "attest", "--run", "abc", "verify", str(tmp_path / "x.json"), "--key", str(tmp_path / "k"))
    assert code == 2 and "--run" in err and "verify" in err


def test_attest_rmf__still_records_a_nist_subcategory(capsys, tmp_path, audited):
    db = _copy_store(audited, tmp_path)
    code, out, _ = cli(capsys, "attest-rmf", "--run", audited["run_id"], "--subcategory", "MAP 1.1", "--by", "PM",
                       "--statement", "Context mapped.", "--db", db)
    assert code == 0
    code, out, _ = cli(capsys, "show", audited["run_id"], "--db", db, "--json")
    assert {"subcategory": "MAP 1.1", "by": "PM"}.items() <= json.loads(out)["attestations"][-1].items()


def test_policy__unknown_article_exits_2_naming_file_and_key(capsys, tmp_path, adult_csvs):
    policy = tmp_path / "bad-policy.yaml"
    bad = json.loads(json.dumps(POLICY))
    bad["rules"][0]["eu_ai_act"] = ["Art. 15", "Art. 16"]
    policy.write_text(yaml.safe_dump(bad))
    data = fast_plan_data(*adult_csvs)
    data["policy"] = str(policy)
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(data))
    code, _, err = cli(capsys, "audit", str(plan), "--db", f"sqlite:///{tmp_path / 'a.db'}", "--out", str(tmp_path / "out"))
    assert code == 2
    assert "bad-policy.yaml" in err and "rules[0].eu_ai_act[1]" in err and "'Art. 16'" in err
    assert not (tmp_path / "a.db").exists() and not (tmp_path / "out").exists()
    code, _, err = cli(capsys, "policy", "explain", str(policy))
    assert code == 2 and "rules[0].eu_ai_act[1]" in err


def test_plan__attestations_file_with_an_unknown_eu_item_exits_2(capsys, tmp_path, adult_csvs):
    (tmp_path / "attest.yaml").write_text(yaml.safe_dump([
        {"framework": "eu-ai-act", "item": "Art. 99", "by": "x", "date": "2026-01-01", "statement": "s"}]))
    data = fast_plan_data(*adult_csvs)
    data["attestations"] = "attest.yaml"
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(data))
    code, _, err = cli(capsys, "audit", str(plan), "--db", f"sqlite:///{tmp_path / 'a.db'}")
    assert code == 2 and "attest.yaml" in err and "[0].item" in err and "'Art. 99'" in err
    assert not (tmp_path / "a.db").exists()


def test_shipped_packs__every_rule_names_its_articles(capsys):
    from govssl.policy import builtin_policies, builtin_policy_path, load_policy

    for name in builtin_policies():
        for rule in load_policy(builtin_policy_path(name)).rules:
            assert rule.eu_ai_act, (name, rule.id)
    code, out, _ = cli(capsys, "policy", "explain", "default")
    assert code == 0 and "Art. 15" in out


def test_report__point_9_describes_the_monitoring_pack_when_installed(capsys, tmp_path, audited, monkeypatch):
    import govssl._resources

    shipped = govssl._resources.policies_dir()
    packs = tmp_path / "packs"
    packs.mkdir()
    for pack in shipped.glob("*.yaml"):
        (packs / pack.name).write_bytes(pack.read_bytes())
    (packs / "monitoring.yaml").write_text(yaml.safe_dump({
        "policy": "monitoring", "version": 1, "description": "Drift and realised performance after release.",
        "rules": [{"id": "feature-drift", "check": "drift", "metric": "max_psi", "max": 0.2, "severity": "warn",
                   "rationale": "Inputs may not drift far from the audited data."}],
    }))
    monkeypatch.setattr(govssl._resources, "policies_dir", lambda: packs)
    db = _copy_store(audited, tmp_path)
    code, _, _ = cli(capsys, "report", audited["run_id"], "--out", str(tmp_path / "docs"), "--db", db, "--format", "md")
    assert code == 0
    points = _sections((tmp_path / "docs" / "annex_iv.md").read_text(), POINT_HEADING)
    status, text = points["9"]
    assert status == "filled from the run, not gated by the policy"
    assert "feature-drift" in text and "drift.max_psi" in text and "<= 0.2" in text
