"""`govssl audit PLAN --mlflow URI`: the run in a real local MLflow store, read back with
mlflow.search_runs; a missing MLflow or an unusable store is refused before anything trains."""

from __future__ import annotations

import json
import math
import sys

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from govssl.formats.mlflow import DEFAULT_URI, NOT_INSTALLED, resolve_uri
from tests.conftest import fast_plan_data, run_cli


@pytest.fixture(scope="module")
def logged(formats_run):
    mlflow.set_tracking_uri(formats_run["mlflow"])
    runs = mlflow.search_runs(experiment_names=["adult-formats"])
    assert len(runs) == 1
    return runs.iloc[0]


def test_mlflow__the_audit_says_where_it_logged(formats_run, logged):
    assert f"logged to MLflow {formats_run['mlflow']}: run {logged['run_id']} in experiment 'adult-formats'" \
        in " ".join(formats_run["out"].split())
    assert logged["status"] == "FINISHED"


def test_mlflow__every_model_wide_metric_equals_evidence_json(formats_run, logged):
    expected = {}
    for check in formats_run["evidence"]["checks"]:
        for m in check["measurements"]:
            if m["subject"] != "" or isinstance(m["value"], str):
                continue
            key = f"{check['check']}.{m['metric']}"
            expected[key] = float(m["value"])
            for bound in ("ci_low", "ci_high"):
                if m[bound] is not None:
                    expected[f"{key}.{bound}"] = float(m[bound])
    got = {c[len("metrics."):]: logged[c] for c in logged.index if c.startswith("metrics.")}
    assert set(got) == set(expected) and len(expected) > 10
    for key, value in expected.items():
        assert got[key] == value or (math.isnan(got[key]) and math.isnan(value)), key
    assert got["performance.accuracy"] == next(
        m["value"] for c in formats_run["evidence"]["checks"] if c["check"] == "performance"
        for m in c["measurements"] if m["metric"] == "accuracy")


def test_mlflow__decision_run_id_and_model_sha256_are_tags(formats_run, logged):
    evidence = formats_run["evidence"]
    assert logged["tags.govssl.decision"] == evidence["decision"]["verdict"]
    assert logged["tags.govssl.run_id"] == formats_run["run_id"] == logged["tags.mlflow.runName"]
    assert logged["tags.govssl.model_sha256"] == evidence["training"]["model_sha256"]
    assert logged["tags.govssl.policy_sha256"] == evidence["policy"]["sha256"]
    for f in evidence["dataset"]["files"]:
        assert logged[f"tags.govssl.data.{f['path'].rsplit('/', 1)[-1]}.sha256"] == f["sha256"]


def test_mlflow__the_plan_is_the_params(formats_run, logged):
    import yaml

    plan = yaml.safe_load(formats_run["plan"].read_text())
    assert logged["params.name"] == "adult-formats"
    assert logged["params.training.pretrain.method"] == plan["training"]["pretrain"]["method"]
    assert logged["params.training.finetune.epochs"] == str(plan["training"]["finetune"]["epochs"])
    assert json.loads(logged["params.dataset.sensitive"]) == ["sex", "race"]


def test_mlflow__documents_and_attestations_are_artifacts(formats_run, logged):
    client = MlflowClient(formats_run["mlflow"])
    names = {a.path for a in client.list_artifacts(logged["run_id"], "govssl")}
    for name in ("model_card.md", "model_card.json", "datasheet.md", "rmf_report.md", "evidence.json",
                 "attestation.intoto.json", "test-result.intoto.json", "plan.json"):
        assert f"govssl/{name}" in names, name
    assert "govssl/model.safetensors" not in names
    local = client.download_artifacts(logged["run_id"], "govssl/evidence.json", str(formats_run["folder"] / "dl"))
    assert open(local, "rb").read() == (formats_run["run_dir"] / "evidence.json").read_bytes()


def test_mlflow__default_uri_is_the_environment_then_a_local_sqlite_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri("") == DEFAULT_URI == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert resolve_uri("") == "sqlite:///elsewhere.db"
    assert resolve_uri("file:///x") == "file:///x"


def _nothing_trained(tmp_path):
    assert not (tmp_path / "out").exists() and not (tmp_path / "audit.db").exists()


def test_mlflow__not_installed_exits_2_saying_what_to_install(capsys, monkeypatch, tmp_path, adult_csvs, write_plan):
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    plan = write_plan(fast_plan_data(*adult_csvs))
    code, _, err = run_cli(capsys, "audit", str(plan), "--db", f"sqlite:///{tmp_path / 'audit.db'}",
                           "--out", str(tmp_path / "out"), "--quiet", "--mlflow")
    assert code == 2 and NOT_INSTALLED in " ".join(err.split())
    assert "govssl[mlflow]" in err
    _nothing_trained(tmp_path)


def test_mlflow__an_unusable_tracking_store_exits_2_before_training(capsys, tmp_path, adult_csvs, write_plan):
    plan = write_plan(fast_plan_data(*adult_csvs))
    (tmp_path / "a-file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    code, _, err = run_cli(capsys, "audit", str(plan), "--db", f"sqlite:///{tmp_path / 'audit.db'}",
                           "--out", str(tmp_path / "out"), "--quiet", f"--mlflow={uri}")
    err = " ".join(err.split())
    assert code == 2 and "--mlflow: cannot open the MLflow tracking store" in err and uri in err
    _nothing_trained(tmp_path)


def test_mlflow__a_bad_plan_is_reported_before_the_tracking_store_is_touched(capsys, tmp_path, write_plan,
                                                                            adult_csvs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = write_plan(fast_plan_data(*adult_csvs, seed=-1))
    code, _, err = run_cli(capsys, "audit", str(plan), "--quiet", "--mlflow")
    assert code == 2 and "seed" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_mlflow__plan_keys_mlflow_would_refuse_are_made_safe(tmp_path):
    from mlflow.utils.validation import path_not_unique, validate_param_and_metric_name

    from govssl.formats.mlflow import params
    from tests.reports.test_render import make_run

    run = make_run(tmp_path)
    run.plan = {"dataset": {"levels": {"income ($)": ["<=50K", ">50K"], "a/../b": ["x"]}, "drop": []},
                "name": "x" * 300}
    got = params(run)
    assert got == {"dataset.levels.income ___": '["<=50K", ">50K"]', "dataset.levels.a_.._b": '["x"]',
                   "dataset.drop": "[]", "name": "x" * 300}
    for key in got:
        assert validate_param_and_metric_name(key) and not path_not_unique(key), key
