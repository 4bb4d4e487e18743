"""End-to-end tests through the command line: exit codes, messages, documents and the store."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from govssl.cli import main
from tests.conftest import REPO, fast_plan_data, run_cli



@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A clean working folder: the default store (.govssl/audit.db) and output land here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOVSSL_DB_URL", raising=False)
    return tmp_path


MARKUP_NAME = "a[/]b[bold]x"  # rich markup in names from user files must print literally


@pytest.fixture(scope="module")
def audited(tmp_path_factory, adult_csvs):
    """One fast audit through the CLI, shared by the tests that read its outputs. Its plan and
    its policy (the default pack, renamed) are both named MARKUP_NAME."""
    import contextlib
    import io

    folder = tmp_path_factory.mktemp("audited")
    policy = yaml.safe_load((REPO / "policies" / "default.yaml").read_text())
    policy["policy"] = MARKUP_NAME
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    plan = folder / "plan.yaml"
    data = fast_plan_data(*adult_csvs, name=MARKUP_NAME, policy=str(folder / "policy.yaml"))
    plan.write_text(yaml.safe_dump(data), encoding="utf-8")
    db = f"sqlite:///{folder / 'audit.db'}"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        main(["audit", str(plan), "--db", db, "--out", str(folder / "out"), "--quiet"])
    run_dir = next((folder / "out").iterdir())
    return {"code": exit_info.value.code, "db": db, "run_dir": run_dir, "plan": plan,
            "out": stdout.getvalue(), "err": stderr.getvalue()}


def test_audit__writes_documents_and_exits_with_the_decision(audited):
    evidence = json.loads((audited["run_dir"] / "evidence.json").read_text())
    assert audited["code"] == evidence["decision"]["exit_code"]
    assert audited["code"] in (0, 1)
    assert evidence["decision"]["verdict"] == ("pass" if audited["code"] == 0 else "blocked")
    for name in ("model.safetensors", "predictions.csv", "model_card.md", "rmf_report.md", "evidence.json"):
        assert (audited["run_dir"] / name).is_file(), name
    statuses = {c["check"]: c["status"] for c in evidence["checks"]}
    assert statuses == {"preflight": "measured", "performance": "measured", "fairness": "measured"}


def test_audit__plan_and_policy_names_with_markup_print_literally(audited):
    evidence = json.loads((audited["run_dir"] / "evidence.json").read_text())
    assert audited["code"] == evidence["decision"]["exit_code"] in (0, 1), audited["err"]
    assert f"plan {MARKUP_NAME}   policy {MARKUP_NAME} v1" in audited["out"], audited["out"]
    assert "internal error" not in audited["err"]


def test_audit__fairness_figures_equal_fairlearn_from_saved_predictions(audited):
    from fairlearn.metrics import (
        MetricFrame, count, demographic_parity_difference, demographic_parity_ratio,
        equalized_odds_difference, false_positive_rate, selection_rate, true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    evidence = json.loads((audited["run_dir"] / "evidence.json").read_text())
    preds = pd.read_csv(audited["run_dir"] / "predictions.csv", keep_default_na=False)
    fairness = next(c for c in evidence["checks"] if c["check"] == "fairness")["measurements"]
    y, yhat = preds["y_true"].to_numpy(), preds["y_pred"].to_numpy()
    compared = 0
    for columns in (["sex"], ["race"], ["sex", "race"]):
        subject = "*".join(columns)
        labels = preds[columns[0]].map(lambda v, c=columns[0]: f"{c}={v}")
        for col in columns[1:]:
            labels = labels + preds[col].map(lambda v, c=col: f"*{c}={v}")
        frame = MetricFrame(
            metrics={"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
                     "false_positive_rate": false_positive_rate, "accuracy": accuracy_score, "count": count},
            y_true=y, y_pred=yhat, sensitive_features=labels,
        )
        for m in fairness:
            if "attribute" in m["details"] and m["details"]["attribute"] == subject:
                expected = frame.by_group.loc[m["subject"], m["metric"]]
                if m["value"] == "nan":  # undefined rate; fairlearn reports 0.0
                    continue
                assert m["value"] == pytest.approx(expected, abs=1e-12), (m["subject"], m["metric"])
                compared += 1
        aggregate = {m["metric"]: m for m in fairness if m["subject"] == subject}
        kept = labels.isin(aggregate["demographic_parity_difference"]["details"]["groups"]).to_numpy()
        sf = labels[kept]
        expected = {
            "demographic_parity_difference": demographic_parity_difference(y[kept], yhat[kept], sensitive_features=sf),
            "demographic_parity_ratio": demographic_parity_ratio(y[kept], yhat[kept], sensitive_features=sf),
            "equalized_odds_difference": equalized_odds_difference(y[kept], yhat[kept], sensitive_features=sf),
        }
        for metric, value in expected.items():
            stored = float(aggregate[metric]["value"])  # evidence.json writes NaN as "nan"
            assert stored == pytest.approx(value, abs=1e-12, nan_ok=True), (subject, metric)
            compared += 1
    assert compared > 50


def test_audit__predictions_are_the_stored_models(audited):
    from safetensors import safe_open

    from govssl.train.models import Architecture, build_classifier, predict_proba

    path = audited["run_dir"] / "model.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        arch = Architecture(json.loads(fh.metadata()["govssl_architecture"]))
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    model = build_classifier(arch)
    model.load_state_dict(state)
    plan = yaml.safe_load(audited["plan"].read_text())
    from govssl.data import load
    from govssl.plan import AuditPlan

    data = load(AuditPlan.model_validate(plan))
    saved = pd.read_csv(audited["run_dir"] / "predictions.csv")
    proba = predict_proba(model, data.X_test)
    np.testing.assert_array_equal(proba.argmax(1), saved["y_pred"].to_numpy())
    np.testing.assert_allclose(proba[:, 1], saved["score"].to_numpy(), rtol=0, atol=1e-7)


def test_runs__lists_both_audits_and_artifacts_match_their_sha256(capsys, workdir, fast_plan):
    first, _, _ = run_cli(capsys, "audit", str(fast_plan), "--quiet")
    second, _, _ = run_cli(capsys, "audit", str(fast_plan), "--quiet")
    assert first in (0, 1) and second in (0, 1)
    code, out, _ = run_cli(capsys, "runs", "--json")
    assert code == 0
    listed = json.loads(out)
    assert len(listed) == 2
    code, table, _ = run_cli(capsys, "runs")
    assert code == 0 and all(r["run_id"] in table for r in listed)
    for row in listed:
        code, out, _ = run_cli(capsys, "show", row["run_id"], "--json")
        assert code == 0
        run = json.loads(out)
        assert run["run_id"] == row["run_id"]
        kinds = {a["kind"] for a in run["artifacts"]}
        assert {"model", "predictions", "model_card", "rmf_report", "evidence"} <= kinds
        for artifact in run["artifacts"]:
            digest = hashlib.sha256(Path(artifact["path"]).read_bytes()).hexdigest()
            assert digest == artifact["sha256"], artifact["path"]
    # the same plan and seed train the same model
    assert listed[0]["model_sha256"] == listed[1]["model_sha256"]


def test_show__unknown_run_exits_2(capsys, workdir, fast_plan):
    run_cli(capsys, "audit", str(fast_plan), "--quiet")
    code, _, err = run_cli(capsys, "show", "nosuchrun")
    assert code == 2
    assert "nosuchrun" in err


# ------------------------------------------------------------------------------------ bad input


def _no_store_no_output(workdir: Path) -> None:
    assert not (workdir / ".govssl" / "audit.db").exists(), "bad input must not create the store"
    out = workdir / "govssl-out"
    assert not out.exists() or not any(out.iterdir()), "bad input must not leave a run folder"


def _bad_inputs(train_csv: Path, test_csv: Path, tmp: Path):
    """(case id, plan data or None, extra files) for each bad input a new user might try."""
    base = fast_plan_data(train_csv, test_csv)
    frame = pd.read_csv(train_csv)

    def plan(**changes):
        data = json.loads(json.dumps(base))
        for dotted, value in changes.items():
            node = data
            *parents, leaf = dotted.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        return data

    with_nan = frame.copy()
    with_nan.loc[7, "hours-per-week"] = np.nan
    with_nan.to_csv(tmp / "nan.csv", index=False)
    (tmp / "empty.csv").write_text("")
    bad_policy = yaml.safe_load((REPO / "policies" / "default.yaml").read_text())
    bad_policy["rules"][0]["metric"] = "acuracy"
    (tmp / "bad-policy.yaml").write_text(yaml.safe_dump(bad_policy))
    return [
        ("unknown plan key", plan(**{"training.finetune.epoch": 3}), ["training.finetune.epoch", "unknown key"]),
        ("missing column", plan(**{"dataset.sensitive": ["sex", "ethnicity"]}), ["ethnicity", "dataset.sensitive[1]"]),
        ("wrong target name", plan(**{"dataset.target": "salary"}), ["salary", "dataset.target"]),
        ("NaN in a numeric feature", plan(**{"dataset.path": str(tmp / "nan.csv"), "dataset.test_path": None}),
         ["nan.csv", "hours-per-week", "data row 8"]),
        ("empty CSV", plan(**{"dataset.path": str(tmp / "empty.csv"), "dataset.test_path": None}), ["empty.csv", "empty"]),
        ("policy rule with an unknown metric", plan(policy=str(tmp / "bad-policy.yaml")),
         ["bad-policy.yaml", "rules[0].metric", "acuracy"]),
        ("data file that does not exist", plan(**{"dataset.path": str(tmp / "nope.csv")}), ["nope.csv", "dataset.path"]),
        ("plan file that does not exist", None, ["missing-plan.yaml", "not found"]),
    ]


BAD_INPUT_IDS = [
    "unknown plan key", "missing column", "wrong target name", "NaN in a numeric feature", "empty CSV",
    "policy rule with an unknown metric", "data file that does not exist", "plan file that does not exist",
]


@pytest.mark.parametrize("case", BAD_INPUT_IDS)
def test_audit__bad_input_exits_2_naming_file_and_key(case, capsys, workdir, adult_csvs, write_plan):
    cases = {c[0]: c for c in _bad_inputs(*adult_csvs, workdir)}
    _, data, expected = cases[case]
    plan_path = write_plan(data) if data is not None else workdir / "missing-plan.yaml"
    code, out, err = run_cli(capsys, "audit", str(plan_path), "--quiet")
    assert code == 2, err
    for fragment in expected:
        assert fragment in err, (fragment, err)
    if data is not None and case != "policy rule with an unknown metric" and "dataset" not in err:
        assert str(plan_path.name) in err
    assert "Traceback" not in err + out
    _no_store_no_output(workdir)


def test_cli__console_script_reports_bad_input_without_traceback(tmp_path):
    """The installed `govssl` entry point, as CI calls it."""
    result = subprocess.run(
        [sys.executable, "-m", "govssl.cli", "audit", str(tmp_path / "absent.yaml")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 2
    assert "absent.yaml" in result.stderr and "Traceback" not in result.stderr


def test_cli__every_command_has_help_and_is_in_the_commands_page(capsys):
    from govssl.cli import cli

    readme = (REPO / "docs" / "commands.md").read_text()
    names = []
    for name, command in cli.commands.items():
        sub = getattr(command, "commands", None)
        names += [f"{name} {s}" for s in sub] if sub else [name]
    for name in names:
        code, out, _ = run_cli(capsys, *name.split(), "--help")
        assert code == 0 and "Usage" in out, name
        assert f"govssl {name}" in readme, f"`govssl {name}` is not documented in docs/commands.md"


def test_policy_validate__default_passes_and_bad_exits_2(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "policy", "validate", str(REPO / "policies" / "default.yaml"))
    assert code == 0 and "valid" in out
    bad = tmp_path / "p.yaml"
    bad.write_text("policy: x\nversion: 1\nrules:\n  - id: a\n    check: fairness\n    metric: equalized_odds_difference\n    max: '10%'\n")
    code, _, err = run_cli(capsys, "policy", "validate", str(bad))
    assert code == 2
    assert "p.yaml: rules[0].max" in err and "'10%'" in err


def test_policy__builtin_pack_name_is_accepted_like_in_plans(capsys, tmp_path, monkeypatch):
    code, by_name, _ = run_cli(capsys, "policy", "validate", "default")
    code_file, by_file, _ = run_cli(capsys, "policy", "validate", str(REPO / "policies" / "default.yaml"))
    assert code == code_file == 0 and "policy 'default'" in by_name
    assert by_name.split("sha256")[-1] == by_file.split("sha256")[-1]
    code, out, _ = run_cli(capsys, "policy", "explain", "default", "--json")
    assert code == 0 and json.loads(out)["policy"] == "default" and json.loads(out)["rules"]
    code, _, err = run_cli(capsys, "policy", "explain", "nope")
    assert code == 2 and "no built-in policy 'nope'" in err
    monkeypatch.chdir(tmp_path)  # a value with .yaml is a file, even with a pack's name
    code, _, err = run_cli(capsys, "policy", "validate", "default.yaml")
    assert code == 2 and "default.yaml" in err


def test_audit__model_card_json_validates_against_the_model_card_toolkit_schema(audited):
    schema_file = REPO.parent / "shared" / "reference" / "mct_model_card.schema.json"
    if not schema_file.is_file():
        pytest.skip("the Model Card Toolkit schema is not beside the repository")
    import jsonschema

    card = json.loads((audited["run_dir"] / "model_card.json").read_text())
    jsonschema.Draft7Validator(json.loads(schema_file.read_text())).validate(card)
    metrics = {(m["type"], m.get("slice", "")) for m in card["quantitative_analysis"]["performance_metrics"]}
    assert ("accuracy", "") in metrics and ("equalized_odds_difference", "sex") in metrics


def test_audit__rmf_report_lists_the_72_subcategories_of_nist_ai_100_1(audited):
    import re

    reference = REPO.parent / "shared" / "reference" / "nist_ai_rmf_subcategories.json"
    text = (audited["run_dir"] / "rmf_report.md").read_text()
    found = re.findall(r"^#### ((?:GOVERN|MAP|MEASURE|MANAGE) \d+\.\d+)", text, flags=re.M)
    assert len(found) == 72 == len(set(found))
    if reference.is_file():
        assert found == [s["id"] for s in json.loads(reference.read_text())]


def test_show__subjects_in_brackets_are_printed_not_read_as_markup(capsys, audited):
    from govssl.store import AuditStore

    run_id = AuditStore(audited["db"]).list_runs()[0]["run_id"]
    code, out, _ = run_cli(capsys, "show", run_id, "--db", audited["db"])
    assert code == 0
    import re

    # the rule message names the worst subject in brackets, e.g. "demographic_parity_ratio [race] 0.45 < 0.8"
    assert re.search(r"demographic_parity_ratio \[(sex|race|sex\*race)\]", out), out


@pytest.mark.parametrize("argv", [
    ["runs"],
    ["show", "abc"],
    ["diff", "abc", "def"],
    ["report", "abc"],
    ["export", "abc", "--out", "x.zip"],
    ["verify"],
    ["waive", "--run", "abc", "--rule", "r", "--approver", "a", "--reason", "b", "--expires", "2030-01-01"],
    ["attest-rmf", "--run", "abc", "--subcategory", "GOVERN 1.1", "--by", "a", "--statement", "s"],
    ["monitor", "abc", "--data", "batch.csv"],
    ["monitor-report", "abc"],
])
def test_commands_on_a_missing_store__exit_2_naming_it_and_create_nothing(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'nowhere' / 'audit.db'}"
    code, out, err = run_cli(capsys, *argv, "--db", url)
    assert code == 2, (out, err)
    assert "no audit store" in err and "audit.db" in err
    assert list(tmp_path.iterdir()) == []


def test_gate_on_a_missing_store__exits_2_and_creates_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    code, _, err = run_cli(capsys, "gate", "--model", "model.safetensors")
    assert code == 2 and "no audit store" in err and ".govssl" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
