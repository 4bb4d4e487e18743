"""Calibration through the command line: the released scores in predictions.csv, the model file
and the model card agree; a calibration the budget cannot hold is refused with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open

from tests.conftest import fast_plan_data, run_cli


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOVSSL_DB_URL", raising=False)
    return tmp_path


def _dp_plan(adult_csvs, **calibration):
    data = fast_plan_data(*adult_csvs, dp=True)
    data["training"]["pretrain"]["method"] = "vime"
    data["training"]["finetune"].update(epochs=4, label_fraction=0.4)
    data["training"]["encoder"]["hidden_dims"] = [32, 32]
    data["training"]["calibration"] = calibration
    data["checks"] = {"performance": {"n_boot": 50}}
    return data


def test_audit__predictions_and_card_carry_the_calibrated_scores(capsys, workdir, write_plan, adult_csvs):
    from govssl.data import load
    from govssl.plan import load_plan
    from govssl.train.models import Architecture, build_classifier, predict_proba

    plan = write_plan(_dp_plan(adult_csvs, method="temperature"))
    code, _, err = run_cli(capsys, "audit", str(plan), "--out", "out", "--db", "sqlite:///a.db", "--quiet")
    assert code in (0, 1), err
    run_dir = next((workdir / "out").iterdir())
    evidence = json.loads((run_dir / "evidence.json").read_text())
    cal = evidence["training"]["calibration"]
    assert cal["method"] == "temperature" and cal["private"] is True and cal["ece_after"] < cal["ece_before"]
    ece = next(m for c in evidence["checks"] if c["check"] == "performance" for m in c["measurements"]
               if m["metric"] == "expected_calibration_error")
    assert ece["value"] == pytest.approx(cal["ece_after"], abs=1e-9)

    with safe_open(run_dir / "model.safetensors", framework="pt") as fh:
        model = build_classifier(Architecture(json.loads(fh.metadata()["govssl_architecture"])))
        model.load_state_dict({k: fh.get_tensor(k) for k in fh.keys()})
    data = load(load_plan(plan))
    scores = pd.read_csv(run_dir / "predictions.csv")["score"].to_numpy()
    np.testing.assert_allclose(scores, predict_proba(model, data.X_test)[:, 1], rtol=0, atol=1e-7)

    card = (run_dir / "model_card.md").read_text()
    assert f"{cal['ece_before']:.4f} before calibration (temperature 1)" in card
    assert f"{cal['ece_after']:.4f} after" in card
    assert "composed into the reported (ε, δ)" in card


def test_audit__calibration_under_the_gdp_accountant_exits_2(capsys, workdir, write_plan, adult_csvs):
    data = _dp_plan(adult_csvs, method="temperature")
    data["training"]["pretrain"]["method"] = "none"
    data["training"]["dp"]["accountant"] = "gdp"
    code, out, err = run_cli(capsys, "audit", str(write_plan(data)), "--out", "out", "--db", "sqlite:///a.db", "--quiet")
    assert code == 2 and "training.dp.accountant" in err and "calibration" in err, err
    assert "Traceback" not in out + err
    assert not (workdir / "out").exists() or not any((workdir / "out").iterdir())


def test_audit__shares_leaving_no_budget_for_fine_tuning_exit_2(capsys, workdir, write_plan, adult_csvs):
    data = _dp_plan(adult_csvs, method="temperature", epsilon_share=0.5)
    data["training"]["dp"]["pretrain_share"] = 0.5
    code, out, err = run_cli(capsys, "audit", str(write_plan(data)), "--out", "out", "--db", "sqlite:///a.db", "--quiet")
    assert code == 2 and "training.calibration.epsilon_share" in err, err
    assert "Traceback" not in out + err
    assert not (workdir / "out").exists() or not any((workdir / "out").iterdir())


def test_audit__calibration_with_a_fixed_noise_multiplier_exits_2(capsys, workdir, write_plan, adult_csvs):
    data = _dp_plan(adult_csvs, method="temperature")
    data["training"]["dp"]["noise_multiplier"] = 1.0
    code, out, err = run_cli(capsys, "audit", str(write_plan(data)), "--out", "out", "--db", "sqlite:///a.db", "--quiet")
    assert code == 2 and "training.dp.noise_multiplier" in err and "training.calibration.method" in err, err
    assert "Traceback" not in out + err


def test_plan__bad_holdout_fraction_exits_2_naming_the_key(capsys, workdir, write_plan, adult_csvs):
    data = _dp_plan(adult_csvs, method="temperature", holdout_fraction=1.5)
    code, out, err = run_cli(capsys, "audit", str(write_plan(data)), "--out", "out", "--db", "sqlite:///a.db", "--quiet")
    assert code == 2 and "training.calibration.holdout_fraction" in err, err
