"""Contrastive pretraining on private rows under DP is refused with the reason; public data is fine."""

from __future__ import annotations

import numpy as np
import pytest

from govssl.cli import main
from govssl.errors import ConfigError
from govssl.plan import load_plan
from tests.conftest import fast_plan_data


def _dp_plan(adult_csvs, method="scarf", **pretrain):
    data = fast_plan_data(*adult_csvs, dp=True)
    data["training"]["pretrain"].update(method=method, **pretrain)
    return data


def test_load_plan__contrastive_pretraining_under_dp_is_refused_with_the_reason(adult_csvs, write_plan):
    path = write_plan(_dp_plan(adult_csvs))
    with pytest.raises(ConfigError) as info:
        load_plan(path)
    text = str(info.value)
    assert str(path) in text and "training.pretrain.method: 'scarf' is contrastive" in text
    assert "couples the examples of a batch" in text and "per-example" in text
    assert "vime" in text and "training.pretrain.public_data" in text


def test_audit__contrastive_pretraining_under_dp_exits_2(adult_csvs, write_plan, capsys, tmp_path):
    path = write_plan(_dp_plan(adult_csvs))
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", str(path), "--db", f"sqlite:///{tmp_path / 'a.db'}", "--out", str(tmp_path / "out"), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "contrastive" in err and "per-example" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_load_plan__simclr_under_dp_points_to_rotation_prediction(write_plan):
    path = write_plan({"name": "d", "dataset": {"builtin": "digits"}, "checks": {},
                       "training": {"pretrain": {"method": "simclr"}, "dp": {"enabled": True}}})
    with pytest.raises(ConfigError, match="rotation prediction"):
        load_plan(path)


def test_load_plan__method_must_fit_the_kind_of_data(write_plan):
    path = write_plan({"name": "d", "dataset": {"builtin": "digits"}, "checks": {},
                       "training": {"pretrain": {"method": "vime"}}})
    with pytest.raises(ConfigError, match="'vime' does not apply to image data"):
        load_plan(path)


def test_fit__contrastive_pretraining_on_declared_public_data_runs_under_dp(adult_csvs, adult_frames, tmp_path, write_plan):
    from govssl.data import load, load_public
    from govssl.progress import NullProgress
    from govssl.train import fit

    public = tmp_path / "public.csv"
    adult_frames[1].sample(500, random_state=1).to_csv(public, index=False)
    data = _dp_plan(adult_csvs, public_data=str(public))
    data["training"]["finetune"]["epochs"] = 1
    data["training"]["baseline"] = False
    plan = load_plan(write_plan(data))
    dataset = load(plan)
    public_X = load_public(plan, dataset)
    assert public_X.shape == (500, dataset.X_train.shape[1])
    result = fit(plan, dataset, tmp_path / "out", NullProgress(), public_X=public_X)
    record = result.record
    assert record.method == "scarf" and record.pretrain_data.startswith("public: ")
    assert record.n_pretrain_rows == 500
    assert record.end_to_end_dp is True and record.dp_scope == "finetune"
    assert [p["phase"] for p in record.dp["phases"]] == ["category levels", "finetune", "calibration"]
    assert np.isfinite(record.dp["epsilon"]) and record.dp["epsilon"] <= 3.0


def test_audit__a_target_epsilon_no_noise_can_reach_exits_2_naming_the_key(adult_csvs, write_plan, capsys, tmp_path):
    # at delta 1e-5 no noise brings this many steps under epsilon 0.005: an input error, not a bug
    data = _dp_plan(adult_csvs, method="vime")
    data["training"]["dp"]["target_epsilon"] = 0.005
    path = write_plan(data)
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", str(path), "--db", f"sqlite:///{tmp_path / 'a.db'}", "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "training.dp.target_epsilon" in err and "cannot be reached" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_audit__a_fixed_noise_whose_epsilon_promises_nothing_exits_2_before_training(adult_csvs, write_plan, capsys,
                                                                                       tmp_path, noise):
    # noise 0 claims an infinite epsilon, noise 0.05 one far past 100: neither may tag a card "DP"
    data = _dp_plan(adult_csvs, method="vime")
    data["training"]["dp"]["noise_multiplier"] = noise
    data["training"]["calibration"] = {"method": "none"}
    path = write_plan(data)
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", str(path), "--db", f"sqlite:///{tmp_path / 'a.db'}", "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "training.dp.noise_multiplier" in err and "past the 100" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
