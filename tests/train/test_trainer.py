"""The trainer: determinism, SCARF corruption and loss, DP accounting and honest DP scope."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors import safe_open

from govssl.data import load
from govssl.plan import AuditPlan
from govssl.progress import NullProgress
from govssl.train import fit, label_subset
from govssl.train.models import Architecture, build_classifier, predict_proba
from govssl.train.scarf import InfoNCELoss, ScarfCorruption
from tests.conftest import fast_plan_data


def _plan(adult_csvs, *, dp=False, seed=0, pretrain="scarf", mode="fine_tune", epochs=3, baseline=False):
    data = fast_plan_data(*adult_csvs, dp=dp, seed=seed)
    data["training"]["pretrain"]["method"] = pretrain
    data["training"]["finetune"].update(mode=mode, epochs=epochs, label_fraction=0.25)
    data["training"]["encoder"]["hidden_dims"] = [32, 32]
    data["training"]["baseline"] = baseline
    return AuditPlan.model_validate(data)


@pytest.fixture(scope="module")
def small_data(adult_csvs):
    return load(_plan(adult_csvs))


def test_fit__same_seed_gives_identical_weights_file(adult_csvs, small_data, tmp_path):
    plan = _plan(adult_csvs)
    first = fit(plan, small_data, tmp_path / "a", NullProgress())
    second = fit(plan, small_data, tmp_path / "b", NullProgress())
    assert first.record.model_sha256 == second.record.model_sha256
    other = fit(_plan(adult_csvs, seed=1), small_data, tmp_path / "c", NullProgress())
    assert other.record.model_sha256 != first.record.model_sha256


def test_fit__saved_weights_reload_to_the_same_predictions(adult_csvs, small_data, tmp_path):
    result = fit(_plan(adult_csvs), small_data, tmp_path, NullProgress())
    with safe_open(result.record.model_path, framework="pt") as fh:
        arch = Architecture(json.loads(fh.metadata()["govssl_architecture"]))
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    model = build_classifier(arch)
    model.load_state_dict(state)
    np.testing.assert_array_equal(predict_proba(model, small_data.X_test), result.predict_proba(small_data.X_test))


def test_fit__dp_epsilon_matches_opacus_accountant_and_stays_under_target(adult_csvs, small_data, tmp_path):
    from opacus.accountants import RDPAccountant

    plan = _plan(adult_csvs, dp=True, pretrain="none")
    result = fit(plan, small_data, tmp_path, NullProgress())
    dp = result.record.dp
    accountant = RDPAccountant()
    accountant.history = [tuple(h) for h in dp["history"]]
    recomputed = accountant.get_epsilon(delta=dp["delta"])
    assert recomputed == pytest.approx(dp["epsilon"], rel=1e-12)
    assert dp["epsilon"] <= plan.training.dp.target_epsilon
    # Opacus's Poisson sampling: rate = 1 / batches per epoch, one accountant step per batch
    batches = math.ceil(result.record.n_labelled_rows / plan.training.finetune.batch_size)
    assert dp["sample_rate"] == pytest.approx(1 / batches)
    fine, calib = dp["phases"]
    assert fine["steps"] == plan.training.finetune.epochs * batches
    # the temperature's fit on the held-out rows is the last phase of the same accountant
    assert calib["phase"] == "calibration" and dp["steps"] == fine["steps"] + calib["steps"]
    assert dp["noise_multiplier"] > 0


def test_fit__dp_pretraining_and_finetuning_compose_in_one_accountant(adult_csvs, small_data, tmp_path):
    from opacus.accountants import RDPAccountant

    plan = _plan(adult_csvs, dp=True, pretrain="vime")
    result = fit(plan, small_data, tmp_path, NullProgress())
    dp = result.record.dp
    pre, fine, calib = dp["phases"]
    assert (pre["phase"], fine["phase"], calib["phase"]) == ("pretrain", "finetune", "calibration")
    # each phase: Poisson rate 1 / batches per epoch, one step per batch
    pre_batches = math.ceil(len(small_data.X_train) / plan.training.pretrain.batch_size)
    fine_batches = math.ceil(result.record.n_labelled_rows / plan.training.finetune.batch_size)
    assert (pre["sample_rate"], pre["steps"]) == (pytest.approx(1 / pre_batches), plan.training.pretrain.epochs * pre_batches)
    assert (fine["sample_rate"], fine["steps"]) == (pytest.approx(1 / fine_batches), plan.training.finetune.epochs * fine_batches)
    assert [tuple(h) for h in dp["history"]] == [
        (pytest.approx(p["noise_multiplier"]), pytest.approx(p["sample_rate"]), p["steps"]) for p in (pre, fine, calib)
    ]
    composed = RDPAccountant()
    composed.history = [tuple(h) for h in dp["history"]]
    assert composed.get_epsilon(delta=dp["delta"]) == pytest.approx(dp["epsilon"], rel=1e-12)
    assert dp["epsilon"] <= plan.training.dp.target_epsilon
    assert "one backward pass" in dp["clipping"]
    assert "without reading any row" in dp["pretrain_replacement_values"]
    # the reported epsilon is the composition: more than either phase alone
    for phase in (pre, fine, calib):
        alone = RDPAccountant()
        alone.history = [(phase["noise_multiplier"], phase["sample_rate"], phase["steps"])]
        assert alone.get_epsilon(delta=dp["delta"]) < dp["epsilon"]


def test_fit__reused_pretraining_starts_fine_tuning_where_the_first_run_did(adult_csvs, small_data, tmp_path,
                                                                             monkeypatch):
    """A run given an earlier run's pretrained encoder does not pretrain, and composes that
    phase's private steps first, as the earlier run did: the same fine-tuning noise, history and
    epsilon."""
    import govssl.train._trainer as trainer

    plan = _plan(adult_csvs, dp=True, pretrain="vime", epochs=2)
    first = fit(plan, small_data, tmp_path / "a", NullProgress())
    kept = first.pretrained
    assert kept is not None and len(kept.history) == 1  # the private pretraining phase
    assert kept.history[0][0] == pytest.approx(first.record.dp["phases"][0]["noise_multiplier"])

    def refuse(*args, **kwargs):
        raise AssertionError("pretraining ran again")

    monkeypatch.setattr(trainer, "pretrain", refuse)
    second = fit(plan, small_data, tmp_path / "b", NullProgress(), reuse_pretrained=kept)
    assert second.record.dp["history"] == first.record.dp["history"]
    assert second.record.dp["epsilon"] == pytest.approx(first.record.dp["epsilon"], rel=1e-12)
    assert second.record.history["pretrain_loss"] == first.record.history["pretrain_loss"]
    # fine-tuning starts from the very state the first run's did: the same weights file
    assert second.record.model_sha256 == first.record.model_sha256
    fresh = fit(_plan(adult_csvs, dp=True, pretrain="none", epochs=2), small_data, tmp_path / "c", NullProgress())
    assert second.record.model_sha256 != fresh.record.model_sha256
    with pytest.raises(ValueError, match="one process"):
        fit(plan, small_data, tmp_path / "d", NullProgress(), nproc=2, reuse_pretrained=kept)


@pytest.mark.parametrize(
    ("pretrain", "mode", "dp", "scope", "end_to_end"),
    [
        ("vime", "fine_tune", True, "pretrain+finetune", True),
        ("vime", "linear_probe", True, "pretrain+head", True),
        ("none", "fine_tune", True, "finetune", True),
        ("scarf", "fine_tune", False, "none", False),
    ],
)
def test_fit__records_which_phases_were_private(adult_csvs, small_data, tmp_path, pretrain, mode, dp, scope, end_to_end):
    result = fit(_plan(adult_csvs, dp=dp, pretrain=pretrain, mode=mode, epochs=1), small_data, tmp_path, NullProgress())
    assert result.record.dp_scope == scope
    assert result.record.end_to_end_dp is end_to_end
    assert (result.record.dp is not None) is dp


def test_fit__linear_probe_leaves_the_pretrained_encoder_unchanged(adult_csvs, small_data, tmp_path):
    probe = fit(_plan(adult_csvs, mode="linear_probe"), small_data, tmp_path / "p", NullProgress())
    tuned = fit(_plan(adult_csvs, mode="fine_tune"), small_data, tmp_path / "t", NullProgress())
    # same seed, same pretraining: the probe's encoder is exactly the pretrained one, fine-tuning moves it
    probe_encoder = [p for p in probe.model[:-1].parameters()]
    tuned_encoder = [p for p in tuned.model[:-1].parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(probe_encoder, tuned_encoder))
    probe2 = fit(_plan(adult_csvs, mode="linear_probe", epochs=1), small_data, tmp_path / "p2", NullProgress())
    for a, b in zip(probe_encoder, probe2.model[:-1].parameters()):
        assert torch.equal(a, b)


def test_label_subset__stratified_and_reproducible():
    y = np.array([0] * 900 + [1] * 100)
    rows = label_subset(y, 0.1, seed=3)
    assert len(rows) == 100 and y[rows].sum() == 10
    np.testing.assert_array_equal(rows, label_subset(y, 0.1, seed=3))
    assert not np.array_equal(rows, label_subset(y, 0.1, seed=4))


def test_scarf_corruption__replaces_whole_features_with_values_from_their_marginals():
    gen = torch.Generator().manual_seed(0)
    numeric = torch.arange(50, dtype=torch.float32)[:, None]  # feature 0: values 0..49
    onehot = torch.nn.functional.one_hot(torch.arange(50) % 3, 3).float()  # feature 1: 3 levels
    X = torch.cat([numeric, onehot], dim=1)
    corrupt = ScarfCorruption(X, [slice(0, 1), slice(1, 4)], rate=0.5)
    anchor = torch.tensor([[100.0, 0.0, 0.0, 0.0]] * 2000)  # values no training row has
    out = corrupt(anchor, gen)
    replaced_numeric = out[:, 0] != 100.0
    replaced_block = out[:, 1:].sum(dim=1) == 1
    assert set(out[replaced_numeric, 0].tolist()) <= set(range(50))
    assert torch.all((out[:, 1:].sum(dim=1) == 0) | replaced_block)  # a one-hot block moves as one
    for rate in (replaced_numeric.float().mean(), replaced_block.float().mean()):
        assert abs(float(rate) - 0.5) < 0.05


def test_infonce_loss__equals_hand_computation():
    torch.manual_seed(0)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    tau = 0.5
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    expected = 0.0
    for i in range(5):
        logits = [float(an[i] @ bn[j]) / tau for j in range(5)]
        expected += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    assert float(InfoNCELoss(tau)(a, b)) == pytest.approx(expected / 5, rel=1e-5)


def test_infonce_loss__rejects_a_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(0.0)


@pytest.mark.parametrize("private", [True, False])
def test_pretrain_objective__private_vime_reads_no_other_row(small_data, private):
    from govssl.train._pretrain import _PerExample
    from govssl.train.models import build_encoder

    encoder = small_data.encoder
    X = torch.as_tensor(small_data.X_train, dtype=torch.float32)
    objective = _PerExample(
        "vime", build_encoder(X.shape[1], [8]), X, [block for _, block in encoder.groups],
        SimpleNamespace(mask_rate=0.3, alpha=2.0), [name in encoder.categorical_names for name, _ in encoder.groups],
        private=private,
    )
    assert objective.corrupt.independent is private and (objective.corrupt.X is None) is private
