"""Tests of the poisoning check: poisoned copies, detectors on a planted cluster, a pattern
backdoor on digits images (a small CNN built here), and the tabular check on Adult."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from govssl.checks.base import CheckParamsError
from govssl.checks.poisoning import (
    MAX_RETRAIN_ROWS, PoisoningCheck, backdoor_trigger, detection_power, detector_scores, exposure, flag_top,
    poison_copy, retrain_sample,
)
from tests.conftest import run_cli

from ._trained import cached_context


def test_poison_copy__rate_rows_and_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 6)).astype(np.float32)
    y = (rng.random(1000) < 0.4).astype(np.int64)
    trigger = backdoor_trigger(X, [1, 3], np.array([5.0, -5.0]))
    X_p, y_p, rows = poison_copy(X, y, trigger, 0.05, target=0, seed=1)
    assert len(rows) == 50 and np.all(y[rows] == 1) and np.all(y_p[rows] == 0)
    assert np.all(X_p[rows][:, [1, 3]] == [5.0, -5.0])
    others = np.setdiff1d(np.arange(1000), rows)
    assert np.array_equal(X_p[others], X[others]) and np.array_equal(y_p[others], y[others])
    assert np.array_equal(X_p[rows][:, [0, 2, 4, 5]], X[rows][:, [0, 2, 4, 5]])


def test_detect__finds_a_planted_cluster_of_activations():
    """A tight, shifted 5% of one class: every detector must find it at 1.5 x the poison rate
    (Tran et al.'s setting)."""
    rng = np.random.default_rng(3)
    acts = np.abs(rng.normal(1.0, 1.0, size=(2000, 32))).astype(np.float32)
    y = np.repeat([0, 1], 1000)
    planted = rng.choice(1000, size=100, replace=False)
    acts[planted] += 3.0 * np.sign(rng.normal(size=32)).astype(np.float32)
    scores = detector_scores(acts, y, 2, seed=0)
    assert set(scores) == {"activation_clustering", "spectral_signature", "spectre"}
    for detector, score in scores.items():
        flagged = flag_top(score, 1.5 * 0.05)
        assert flagged.sum() == 150
        recall = flagged[planted].mean()
        assert recall > 0.9, (detector, recall)


def test_detect__spectre_finds_poison_off_the_top_direction():
    """The class varies most along one direction (SD 5); the poison (5%) sits 4 SD off along
    another. The top singular vector is the natural one, so spectral signatures miss the poison;
    SPECTRE whitens with a robust covariance first (Hayase et al. 2021) and finds it."""
    rng = np.random.default_rng(5)
    acts = rng.normal(size=(2000, 20))
    acts[:, 0] *= 5.0
    y = np.zeros(2000, dtype=np.int64)
    planted = rng.choice(2000, size=100, replace=False)
    acts[planted, 3] += 4.0
    scores = detector_scores(acts.astype(np.float32), y, 1, detectors=("spectral_signature", "spectre"), seed=0)
    recall = {d: flag_top(s, 0.075)[planted].mean() for d, s in scores.items()}
    assert recall["spectre"] > 0.8 and recall["spectral_signature"] < 0.3, recall


def test_detection_power__binomial_threshold_and_interval():
    from scipy.stats import binom

    power = detection_power(33, 0.015, 3, 0.95)
    assert power["min_detectable_recall"] == pytest.approx(3 / 33)
    assert binom.sf(2, 33, 0.015) < 0.05 < binom.sf(1, 33, 0.015)  # 3 finds beat chance, 2 do not
    assert power["p_value_vs_chance"] == pytest.approx(binom.sf(2, 33, 0.015))
    assert power["recall_ci"][0] < 3 / 33 < power["recall_ci"][1] and power["detectable_at_this_budget"]
    hopeless = detection_power(2, 0.5, 2, 0.95)  # even finding both of 2 rows has p = 0.25
    assert not hopeless["detectable_at_this_budget"] and np.isnan(hopeless["min_detectable_recall"])


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1400], order[1400:]
    return X[train], y[train], X[test], y[test]


def _train_cnn(X, y):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(16 * 64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    generator = torch.Generator().manual_seed(0)
    for _ in range(25):
        for idx in torch.randperm(len(X), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(Xt[idx]), yt[idx]).backward()
            optimizer.step()
    return model.eval(), np.arange(len(X))


@pytest.mark.slow
def test_poisoning__digits_pattern_backdoor_succeeds_and_recall_is_reported():
    X_train, y_train, X_test, y_test = _digits()
    trigger = backdoor_trigger(X_train)
    triggered = trigger(X_test[:3])
    assert triggered.shape == X_test[:3].shape and np.all(triggered[:, 0, -2, -2] == X_train.max())
    out = exposure("poisoning", X_train, y_train, X_test, y_test, _train_cnn, trigger, rates=[0.05], target=0,
                   n_classes=10, seed=0, confidence=0.95, flag_budget=1.5, details={})
    by = {(m.metric, m.subject): m for m in out}
    success = by[("backdoor_success_rate", "rate=0.05")]
    assert success.value > 0.8, success.value
    assert success.details["clean_retrain_success_rate"] < 0.3
    assert abs(by[("clean_accuracy_drop", "rate=0.05")].value) < 0.05
    recalls = {}
    for detector in ("activation_clustering", "spectral_signature", "spectre"):
        recall = by[("detector_recall", f"{detector} penultimate rate=0.05")]
        assert recall.n == 70 and recall.details["flagged"] == round(0.075 * 1400)
        assert recall.ci_low <= recall.value <= recall.ci_high
        recalls[detector] = recall.value
    best = by[("best_detector_recall", "rate=0.05")]
    assert best.value == max(recalls.values()) and recalls[best.details["detector"]] == best.value
    assert best.value > best.details["power"]["min_detectable_recall"], "the best detector must beat chance"


@pytest.mark.slow
def test_poisoning__tabular_check_on_adult(adult_csvs, tmp_path_factory):
    from tests.conftest import fast_plan_data

    folder = tmp_path_factory.mktemp("poisoning")
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(fast_plan_data(*adult_csvs)), encoding="utf-8")
    ctx = cached_context("poisoning-adult", path, folder)
    result = PoisoningCheck(rates=[0.05], trigger_features=["capital-loss", "hours-per-week"]).run(ctx)
    assert result.status == "measured", result.reason
    by = {(m.metric, m.subject): m for m in result.measurements}
    success = by[("backdoor_success_rate", "rate=0.05")]
    assert success.details["retrain_budget"]["pretrain_epochs"] == 1
    assert set(success.details["trigger"]["features"]) == {"capital-loss", "hours-per-week"}
    assert success.value > success.details["clean_retrain_success_rate"] + 0.2
    for c in (0, 1):
        assert 0 <= by[("flagged_fraction", f"spectre class={c}")].value <= 1
    for representation in ("penultimate", "ssl_encoder"):  # the plan pretrains (SCARF)
        recall = by[("detector_recall", f"spectre {representation} rate=0.05")]
        assert recall.n == success.details["n_poison_labelled"]
        assert recall.details["power"]["chance_recall"] == pytest.approx(0.075)
    best = by[("best_detector_recall", "rate=0.05")]
    assert best.value >= 0.8, best.details["best_of"]


def test_poisoning__trigger_on_a_sensitive_feature_is_refused(adult_csvs, tmp_path_factory):
    class _Data:
        X_train = np.zeros((2, 3), np.float32)
        sensitive = ("age",)

        class encoder:  # noqa: N801
            groups = [("age", slice(0, 1)), ("hours", slice(1, 2)), ("sex", slice(2, 3))]

            @staticmethod
            def numeric_ranges():
                return {"age": (0.0, 1.0), "hours": (0.0, 1.0)}

    with pytest.raises(ValueError, match="age"):
        PoisoningCheck(trigger_features=["age"])._trigger(_Data())
    _, info = PoisoningCheck()._trigger(_Data())
    assert list(info["features"]) == ["hours"]


def test_retrain_sample__all_rows_up_to_the_cap_then_a_seeded_uniform_sample():
    assert retrain_sample(5000, None, 0) is None
    assert retrain_sample(5000, 5000, 0) is None  # the cap does not bind: every row, as before
    rows = retrain_sample(5001, 5000, 0)
    assert len(rows) == 5000 and np.all(np.diff(rows) > 0) and rows[-1] <= 5000
    assert np.array_equal(rows, retrain_sample(5001, 5000, 0))
    big = retrain_sample(1_000_000, MAX_RETRAIN_ROWS, 3)
    assert len(big) == MAX_RETRAIN_ROWS and not np.array_equal(big, retrain_sample(1_000_000, MAX_RETRAIN_ROWS, 4))
    # uniform: each tenth of the table gives about a tenth of the sample
    counts = np.bincount(big // 100_000, minlength=10)
    assert np.all(np.abs(counts - 10_000) < 500), counts


@pytest.mark.parametrize("value", [999, 0, -5, 1.5, "5000", True, 1e6])
def test_poisoning__max_retrain_rows_is_validated(value):
    with pytest.raises(CheckParamsError, match="max_retrain_rows"):
        PoisoningCheck(max_retrain_rows=value)
    assert PoisoningCheck(max_retrain_rows=None).params["max_retrain_rows"] is None
    assert PoisoningCheck().params["max_retrain_rows"] == MAX_RETRAIN_ROWS
    assert PoisoningCheck(max_retrain_rows=1000).params["max_retrain_rows"] == 1000


def test_audit__a_bad_max_retrain_rows_exits_2_naming_the_key(capsys, tmp_path, monkeypatch, adult_csvs, write_plan):
    from tests.conftest import fast_plan_data

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOVSSL_DB_URL", raising=False)
    data = fast_plan_data(*adult_csvs)
    data["checks"]["poisoning"] = {"max_retrain_rows": 10}
    plan_path = write_plan(data)
    code, out, err = run_cli(capsys, "audit", str(plan_path), "--quiet")
    assert code == 2, err
    assert "checks.poisoning.max_retrain_rows" in err and "1000" in err and plan_path.name in err
    assert "Traceback" not in out + err
    assert not (tmp_path / ".govssl").exists() and not (tmp_path / "govssl-out").exists(), \
        "a refused plan creates no store and no run folder"


#: a cap below the demo's 32,561 training rows, so that the capped path runs on the demo recipe. At
#: 10,000 rows (about 800 labelled, DP-SGD at epsilon 3) the clean retrain itself put 75% of the
#: triggered test rows in the target class: too weak a model for a backdoor to show
CAPPED_DEMO_ROWS = 20_000


def _by(result):
    return {(m.metric, m.subject): m for m in result.measurements}


@pytest.mark.slow
def test_poisoning__a_cap_that_does_not_bind_gives_the_figures_of_every_row(adult_csvs, tmp_path_factory):
    """4,000 training rows: a cap of 4,000 (or the default) retrains on every row, as the check did
    before the cap existed (``null``): every figure and interval is the same."""
    from tests.conftest import fast_plan_data

    folder = tmp_path_factory.mktemp("poisoning-cap")
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(fast_plan_data(*adult_csvs)), encoding="utf-8")
    ctx = cached_context("poisoning-adult", path, folder)
    params = dict(rates=[0.05], trigger_features=["capital-loss", "hours-per-week"], detectors=["spectre"])
    every = _by(PoisoningCheck(**params, max_retrain_rows=None).run(ctx))
    for cap in (4000, MAX_RETRAIN_ROWS):
        capped = _by(PoisoningCheck(**params, max_retrain_rows=cap).run(ctx))
        assert capped.keys() == every.keys()
        for key, m in every.items():
            c = capped[key]
            assert (c.value, c.ci_low, c.ci_high, c.n) == (m.value, m.ci_low, m.ci_high, m.n), key
            if "retrain_rows" in m.details:
                assert c.details["retrain_rows"] == {"n_training_rows": 4000, "max_retrain_rows": cap,
                                                     "n_retrain_rows": 4000, "subsampled": False}
                assert {k: v for k, v in c.details.items() if k != "retrain_rows"} == \
                    {k: v for k, v in m.details.items() if k != "retrain_rows"}


@pytest.mark.slow
def test_poisoning__capped_retrains_on_the_demo_recipe_still_find_the_backdoor():
    """The demo plan (Adult, DP-SGD at epsilon 3, VIME pretraining, 10% labels) with its retrains
    capped below its 32,561 rows: a 5% backdoor still takes over the triggered rows and the
    best detector still finds at least half of it (the policy's bound), past what chance needs at
    the sample's size. A collapse of either fails this test."""
    from pathlib import Path

    from govssl import data, train
    from govssl.checks.base import CheckContext
    from govssl.plan import load_plan
    from govssl.progress import NullProgress
    from tests.conftest import REPO

    plan = load_plan(REPO / "audits" / "adult-income.yaml")
    dataset = data.load(plan)
    t = plan.training
    quick = plan.model_copy(update={"training": t.model_copy(update={  # the context's own model: not retrained
        "pretrain": t.pretrain.model_copy(update={"epochs": 0}),
        "finetune": t.finetune.model_copy(update={"epochs": 1}), "baseline": False,
        "dp": t.dp.model_copy(update={"enabled": False})})})
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        trained = train.fit(quick, dataset, Path(folder), NullProgress())
    ctx = CheckContext(dataset=dataset, train=trained, seed=plan.seed, out_dir=None, progress=NullProgress(),
                       plan=plan)
    cap = CAPPED_DEMO_ROWS
    result = PoisoningCheck(**{**plan.checks["poisoning"], "max_retrain_rows": cap}).run(ctx)
    assert result.status == "measured", result.reason
    by = _by(result)
    for rate in (0.01, 0.05):
        success = by[("backdoor_success_rate", f"rate={rate:g}")]
        assert success.details["retrain_rows"] == {
            "n_training_rows": 32561, "max_retrain_rows": cap, "n_retrain_rows": cap, "subsampled": True,
            "sample": success.details["retrain_rows"]["sample"]}
        assert success.details["n_poison_rows"] == round(rate * cap)
        assert success.n == int(np.sum(dataset.y_test != 0)), "every triggered test row is still used"
    success = by[("backdoor_success_rate", "rate=0.05")]
    assert success.value > success.details["clean_retrain_success_rate"] + 0.5, success.value
    best = by[("best_detector_recall", "rate=0.05")]
    power = best.details["power"]
    assert best.n == best.details["n_poison_labelled"] > 0
    assert best.value >= 0.5 and best.ci_low > power["min_detectable_recall"] > power["chance_recall"], \
        (best.value, best.ci_low, power, best.details["best_of"])
