"""Shared fixtures: small real data (rows of the built-in Adult) and fast audit plans."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `govssl ARGV` in-process: (exit code, stdout, stderr)."""
    from govssl.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture(scope="session")
def adult_frames():
    from govssl.data._builtin import load_builtin

    _, train, test, _ = load_builtin("adult")
    return train, test


@pytest.fixture(scope="session")
def adult_csvs(tmp_path_factory, adult_frames):
    """4,000 training and 3,000 test rows of Adult as CSV files, as a user would bring them."""
    train, test = adult_frames
    folder = tmp_path_factory.mktemp("adult-small")
    train.sample(4000, random_state=0).to_csv(folder / "train.csv", index=False)
    test.sample(3000, random_state=0).to_csv(folder / "test.csv", index=False)
    return folder / "train.csv", folder / "test.csv"


def fast_plan_data(train_csv: Path, test_csv: Path, *, dp: bool = False, **overrides) -> dict:
    """A plan that trains in a few seconds: same pipeline as the demo, smaller budgets."""
    plan = {
        "name": "adult-small",
        "seed": 0,
        "dataset": {
            "path": str(train_csv),
            "test_path": str(test_csv),
            "target": "income",
            "positive_label": ">50K",
            "sensitive": ["sex", "race"],
            "drop": ["fnlwgt"],
        },
        "training": {
            "encoder": {"hidden_dims": [64, 64]},
            "pretrain": {"method": "scarf", "epochs": 1, "batch_size": 256},
            "finetune": {"mode": "fine_tune", "label_fraction": 0.5, "epochs": 8, "batch_size": 128},
            "dp": {"enabled": dp, "target_epsilon": 3.0, "delta": 1e-5},
            "baseline": False,  # the label_efficiency check is not in these plans
        },
        "checks": {"performance": {"n_boot": 100}, "fairness": {"n_boot": 100, "min_group_size": 30}},
        "policy": str(REPO / "policies" / "default.yaml"),
        "model_card": {"name": "adult-small", "intended_use": "tests"},
    }
    for key, value in overrides.items():
        plan[key] = value
    return plan


@pytest.fixture
def write_plan(tmp_path):
    """write_plan(data, name=...) -> path of a plan YAML in the test's folder."""

    def write(data: dict, name: str = "plan.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write


@pytest.fixture
def fast_plan(adult_csvs, write_plan):
    return write_plan(fast_plan_data(*adult_csvs))
