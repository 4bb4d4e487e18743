"""Under DP, category levels the plan does not declare are chosen by a private selection (Gaussian
thresholding of the value counts) whose cost is composed into the training's epsilon."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from govssl.data import load
from govssl.data._table import MISSING, OTHER, TableEncoder
from govssl.plan import DPSpec, load_plan
from govssl.progress import NullProgress
from govssl.train._dp import SELECTION_DELTA_SHARE, composed_epsilon, level_selection
from tests.conftest import fast_plan_data


def test_level_selection__threshold_bounds_a_one_row_value_by_its_delta_share():
    from scipy.stats import norm

    dp = DPSpec(enabled=True, target_epsilon=3.0, delta=1e-5, levels_share=0.1)
    sel = level_selection(dp, n_columns=8, seed=0)
    assert sel["delta"] == pytest.approx(SELECTION_DELTA_SHARE * 1e-5)
    assert sel["sigma"] == pytest.approx(sel["noise_multiplier"] * np.sqrt(8))
    # a value held by the one differing row (count 1) crosses in any of the 8 columns with
    # probability at most the selection's delta
    assert 8 * norm.sf((sel["threshold"] - 1) / sel["sigma"]) == pytest.approx(sel["delta"], rel=1e-6)
    # the selection alone reaches its share of the target (within the bisection's tolerance)
    alone = composed_epsilon([(sel["noise_multiplier"], 1.0, 1)], 1e-5 - sel["delta"], "rdp", wide_orders=True)
    assert 0.3 - 0.011 <= alone <= 0.3


def test_level_selection__gdp_cannot_compose_it():
    from govssl.errors import ConfigError

    with pytest.raises(ConfigError, match="training.dp.accountant: 'gdp'"):
        level_selection(DPSpec(enabled=True, accountant="gdp"), 3, 0)


def test_encoder__private_selection_keeps_common_values_and_drops_rare_ones():
    rng = np.random.default_rng(0)
    values = ["common"] * 5000 + ["frequent"] * 2000 + ["rare"] * 30 + [f"person-{i}" for i in range(200)]
    frame = pd.DataFrame({"c": rng.permutation(values)})
    sel = {"sigma": 40.0, "threshold": 1 + 40.0 * 5.3, "seed": 1, "noise_multiplier": 40.0, "delta": 1e-6}
    enc = TableEncoder([], ["c"], selection=sel).fit(frame)
    (spec,) = enc.categorical
    assert set(spec.levels) == {"common", "frequent", MISSING, OTHER}
    record = enc.levels_record(dp=True)
    assert record["private"] is True and record["columns"] == {"c": "training rows, private selection"}
    assert "composed into the epsilon" in record["note"]
    # the same seed draws the same noise: the same levels
    assert TableEncoder([], ["c"], selection=sel).fit(frame).categorical[0].levels == spec.levels


def test_without_dp__levels_keep_the_k_rows_rule(adult_csvs, write_plan):
    data = load(load_plan(write_plan(fast_plan_data(*adult_csvs, dp=False))))
    assert data.encoder.selection is None
    assert data.encoder.levels_record(dp=False)["private"] is False


def test_fit__undeclared_levels_under_dp_are_selected_privately_and_composed(adult_csvs, write_plan, tmp_path):
    from govssl.train import fit

    plan_data = fast_plan_data(*adult_csvs, dp=True)
    plan_data["training"]["pretrain"]["method"] = "none"
    plan_data["training"]["finetune"]["epochs"] = 2
    plan_data["training"]["calibration"] = {"method": "none"}
    # one column declared: only the others are selected
    plan_data["dataset"]["levels"] = {"sex": ["Female", "Male"]}
    plan = load_plan(write_plan(plan_data))
    data = load(plan)
    sel = data.encoder.selection
    undeclared = [c for c in data.encoder.categorical_names if c != "sex"]
    assert sel is not None and sel["columns"] == len(undeclared)
    for spec in data.encoder.categorical:
        if spec.name != "sex":  # 4,000 rows: no level under the threshold survives by its count alone
            assert len(spec.levels) >= 2
    record = fit(plan, data, tmp_path / "out", NullProgress()).record
    dp = record.dp
    assert dp["phases"][0] == {"phase": "category levels", "noise_multiplier": sel["noise_multiplier"],
                               "sample_rate": 1.0, "steps": 1}
    assert dp["history"][0] == [sel["noise_multiplier"], 1.0, 1]
    assert dp["delta"] == 1e-5 and dp["accountant_delta"] == pytest.approx(1e-5 * (1 - SELECTION_DELTA_SHARE))
    # the reported epsilon is Opacus's composition of the whole history, selection included,
    # at the delta the selection leaves, and it meets the target
    assert dp["epsilon"] == pytest.approx(composed_epsilon(dp["history"], dp["accountant_delta"], "rdp"), rel=1e-9)
    assert dp["epsilon"] <= 3.0 + 1e-9
    without = composed_epsilon(dp["history"][1:], dp["accountant_delta"], "rdp")
    assert without < dp["epsilon"]  # the selection costs something, and it is counted
    levels = record.category_levels
    assert levels["private"] is True and levels["columns"]["sex"] == "declared"
    assert levels["selection"]["noise_multiplier"] == sel["noise_multiplier"]
