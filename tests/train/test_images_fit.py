"""The trainer on images: determinism, DP with rotation prediction, the CNN saved and reloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from govssl.data import load
from govssl.plan import AuditPlan
from govssl.progress import NullProgress
from govssl.train import fit
from govssl.train.models import Architecture, build_classifier, predict_proba


def _plan(method="rotation", dp=False, seed=0, mode="linear_probe"):
    return AuditPlan.model_validate({
        "name": "digits-small", "seed": seed, "dataset": {"builtin": "digits"},
        "training": {
            "encoder": {"hidden_dims": [32], "channels": [8, 16]},
            "pretrain": {"method": method, "epochs": 1, "batch_size": 256},
            "finetune": {"mode": mode, "label_fraction": 0.2, "epochs": 2, "batch_size": 128, "lr": 0.01},
            "dp": {"enabled": dp, "target_epsilon": 4.0, "delta": 1e-5},
            "baseline": False,
        },
        "checks": {},
    })


@pytest.fixture(scope="module")
def digits():
    return load(_plan())


@pytest.mark.parametrize("method", [pytest.param("simclr", marks=pytest.mark.slow), "rotation"])
def test_fit__images_same_seed_gives_identical_weights_file(digits, tmp_path, method):
    first = fit(_plan(method), digits, tmp_path / "a", NullProgress())
    second = fit(_plan(method), digits, tmp_path / "b", NullProgress())
    assert first.record.model_sha256 == second.record.model_sha256
    assert first.record.method == method and first.predict_proba(digits.X_test).shape == (len(digits.X_test), 10)


def test_fit__images_cnn_reloads_from_its_file(digits, tmp_path):
    result = fit(_plan(), digits, tmp_path, NullProgress())
    with safe_open(result.record.model_path, framework="pt") as fh:
        arch = Architecture(json.loads(fh.metadata()["govssl_architecture"]))
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    model = build_classifier(arch)
    model.load_state_dict(state)
    np.testing.assert_array_equal(predict_proba(model, digits.X_test), result.predict_proba(digits.X_test))
    assert arch["kind"] == "cnn" and "CNN on 1x8x8 images" in result.record.architecture


@pytest.mark.slow
def test_fit__images_rotation_under_dp_composes_both_phases(digits, tmp_path):
    from opacus.accountants import RDPAccountant

    result = fit(_plan(dp=True, mode="fine_tune"), digits, tmp_path, NullProgress())
    dp = result.record.dp
    assert result.record.dp_scope == "pretrain+finetune" and result.record.end_to_end_dp is True
    assert [p["phase"] for p in dp["phases"]] == ["pretrain", "finetune", "calibration"]
    acc = RDPAccountant()
    acc.history = [tuple(h) for h in dp["history"]]
    assert acc.get_epsilon(delta=dp["delta"]) == pytest.approx(dp["epsilon"], rel=1e-12)
    assert dp["epsilon"] <= 4.0
