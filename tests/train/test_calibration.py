"""Temperature scaling of the released model: fitted on held-out labelled rows, private under DP,
folded into the saved weights, and off with ``method: none``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from govssl.checks.performance import expected_calibration_error
from govssl.data import load
from govssl.plan import AuditPlan
from govssl.progress import NullProgress
from govssl.train import fit, label_subset
from govssl.train.models import Architecture, build_classifier, predict_proba
from tests.conftest import fast_plan_data


def _plan(adult_csvs, *, dp=False, pretrain="vime", **calibration):
    data = fast_plan_data(*adult_csvs, dp=dp)
    data["training"]["pretrain"]["method"] = pretrain
    data["training"]["finetune"].update(epochs=4, label_fraction=0.4)
    data["training"]["encoder"]["hidden_dims"] = [32, 32]
    if calibration:
        data["training"]["calibration"] = calibration
    return AuditPlan.model_validate(data)


@pytest.fixture(scope="module")
def small_data(adult_csvs):
    return load(_plan(adult_csvs))


def _reload(path):
    with safe_open(path, framework="pt") as fh:
        meta = json.loads(fh.metadata()["govssl_architecture"])
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    model = build_classifier(Architecture(meta))
    model.load_state_dict(state)
    return model.eval(), meta


@pytest.mark.parametrize("dp", [False, True])
def test_calibration__lowers_the_test_ece_and_the_checks_see_the_calibrated_model(adult_csvs, small_data, tmp_path, dp):
    result = fit(_plan(adult_csvs, dp=dp), small_data, tmp_path, NullProgress())
    cal = result.record.calibration
    assert cal["method"] == "temperature" and cal["private"] is dp
    assert cal["ece_after"] < cal["ece_before"]
    # the figure the performance check computes from the model is the calibrated one
    proba = result.predict_proba(small_data.X_test)
    assert expected_calibration_error(small_data.y_test, proba) == pytest.approx(cal["ece_after"], abs=1e-12)
    assert cal["temperature"] != pytest.approx(1.0, abs=1e-3)


def test_calibration__without_the_errors_trains_the_same_weights_and_leaves_them_out(adult_csvs, small_data, tmp_path):
    plan = _plan(adult_csvs, dp=True)
    full = fit(plan, small_data, tmp_path / "full", NullProgress())
    lean = fit(plan, small_data, tmp_path / "lean", NullProgress(), calibration_errors=False)
    assert lean.record.model_sha256 == full.record.model_sha256
    assert lean.record.dp["epsilon"] == full.record.dp["epsilon"]
    assert lean.record.calibration["temperature"] == full.record.calibration["temperature"]
    assert "ece_before" in full.record.calibration
    assert not {"ece_before", "ece_after", "ece_split"} & set(lean.record.calibration)


def test_calibration__held_out_rows_are_not_used_for_the_classifier(adult_csvs, small_data, tmp_path):
    plan = _plan(adult_csvs, holdout_fraction=0.25)
    result = fit(plan, small_data, tmp_path, NullProgress())
    labelled = label_subset(small_data.y_train, plan.training.finetune.label_fraction, plan.seed)
    held, fitted = result.calibration_rows, result.labelled_rows
    assert len(np.intersect1d(held, fitted)) == 0
    np.testing.assert_array_equal(np.union1d(held, fitted), labelled)
    assert len(held) == pytest.approx(0.25 * len(labelled), abs=2)
    assert result.record.n_labelled_rows == len(fitted) and result.record.calibration["rows"] == len(held)
    assert set(small_data.y_train[held]) == set(small_data.y_train[labelled])  # stratified


def test_calibration__saved_file_and_model_in_memory_apply_the_same_temperature(adult_csvs, small_data, tmp_path):
    result = fit(_plan(adult_csvs), small_data, tmp_path, NullProgress())
    temperature = result.record.calibration["temperature"]
    model, meta = _reload(result.record.model_path)
    assert meta["calibration"]["temperature"] == temperature
    calibrated = predict_proba(model, small_data.X_test)
    np.testing.assert_array_equal(calibrated, result.predict_proba(small_data.X_test))
    # undoing the temperature gives back the classifier's own probabilities and ECE
    with torch.no_grad():
        model[-1].weight.mul_(temperature)
        model[-1].bias.mul_(temperature)
    raw = predict_proba(model, small_data.X_test)
    assert np.abs(raw - calibrated).max() > 0.01
    np.testing.assert_array_equal(raw.argmax(axis=1), calibrated.argmax(axis=1))
    assert expected_calibration_error(small_data.y_test, raw) == pytest.approx(
        result.record.calibration["ece_before"], abs=1e-6)


def test_calibration__under_dp_is_a_phase_of_the_one_accountant(adult_csvs, small_data, tmp_path):
    from opacus.accountants import RDPAccountant

    from govssl.train._dp import calibrate_phases, composed_epsilon

    plan = _plan(adult_csvs, dp=True)
    result = fit(plan, small_data, tmp_path, NullProgress())
    dp, cal = result.record.dp, result.record.calibration
    assert cal["private"] is True and cal["epsilon_share"] == plan.training.calibration.epsilon_share
    assert [p["phase"] for p in dp["phases"]] == ["pretrain", "finetune", "calibration"]
    pre, fine, calib = dp["phases"]
    assert (calib["sample_rate"], calib["steps"]) == (1.0, cal["steps"])
    assert dp["steps"] == pre["steps"] + fine["steps"] + calib["steps"]
    # the recorded epsilon is Opacus's accountant over every step of every phase
    accountant = RDPAccountant()
    accountant.history = [(p["noise_multiplier"], p["sample_rate"], p["steps"]) for p in dp["phases"]]
    assert accountant.get_epsilon(delta=dp["delta"]) == pytest.approx(dp["epsilon"], rel=1e-12)
    assert [tuple(h) for h in dp["history"]] == accountant.history
    assert plan.training.dp.target_epsilon - 0.05 <= dp["epsilon"] <= plan.training.dp.target_epsilon
    # the calibration phase alone reaches its share of the target, no more
    alone = composed_epsilon([(calib["noise_multiplier"], 1.0, calib["steps"])], dp["delta"], "rdp")
    assert alone <= cal["epsilon_share"] * plan.training.dp.target_epsilon
    schedules = [(p["sample_rate"], p["steps"]) for p in dp["phases"]]
    noises = calibrate_phases(plan.training.dp, schedules, [plan.training.dp.pretrain_share, None, cal["epsilon_share"]])
    assert noises == [p["noise_multiplier"] for p in dp["phases"]]


@pytest.mark.parametrize("dp", [False, True])
def test_calibration__method_none_trains_as_before(adult_csvs, small_data, tmp_path, dp):
    from govssl.train._dp import calibrate_phases

    plan = _plan(adult_csvs, dp=dp, method="none")
    result = fit(plan, small_data, tmp_path, NullProgress())
    np.testing.assert_array_equal(
        result.labelled_rows, label_subset(small_data.y_train, plan.training.finetune.label_fraction, plan.seed))
    assert result.record.calibration == {"method": "none"} and result.calibration_rows is None
    model, meta = _reload(result.record.model_path)
    assert "calibration" not in meta
    np.testing.assert_array_equal(predict_proba(model, small_data.X_test), result.predict_proba(small_data.X_test))
    if dp:
        phases = result.record.dp["phases"]
        assert [p["phase"] for p in phases] == ["pretrain", "finetune"]
        # the two-phase split of the budget is the one before calibration existed
        assert calibrate_phases(plan.training.dp, [(p["sample_rate"], p["steps"]) for p in phases]) == \
            [p["noise_multiplier"] for p in phases]


def test_calibrate_phases__default_shares_are_unchanged():
    from types import SimpleNamespace

    from govssl.train._dp import calibrate_phases

    dp = SimpleNamespace(noise_multiplier=None, target_epsilon=3.0, delta=1e-5, accountant="rdp", pretrain_share=0.2)
    phases = [(0.1, 30), (0.25, 80)]
    assert calibrate_phases(dp, phases) == calibrate_phases(dp, phases, [0.2, None])
    with pytest.raises(ValueError, match="exactly one"):
        calibrate_phases(dp, phases, [0.2, 0.3])


def test_fit_scale_private__empty_poisson_batches_take_noise_steps_the_accountant_counts():
    from types import SimpleNamespace

    from govssl.train._dp import fit_scale_private

    dp = SimpleNamespace(accountant="rdp", delta=1e-5)
    logits = torch.tensor([[2.0, -2.0], [-1.0, 1.0], [3.0, 0.0], [0.0, 2.5]])
    y = torch.tensor([0, 0, 1, 1])
    # rate 1/4 on 4 rows: about a third of the 40 batches are empty
    scale, spent = fit_scale_private(logits, y, dp, 1.0, 1.0, 1, 40, 0.1, (0.01, 100.0),
                                     torch.Generator().manual_seed(0), prior_history=[(2.0, 0.5, 10)])
    assert 0.01 <= scale <= 100.0
    assert spent["history"] == [[2.0, 0.5, 10], [1.0, 0.25, 40]]
    assert np.isfinite(spent["epsilon"]) and spent["epsilon"] > 0
