"""An image audit end to end: multiclass predictions file, skipped fairness, image task in the card."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from govssl.audit import run_audit
from tests.conftest import REPO


@pytest.mark.slow
def test_run_audit__digits_end_to_end(tmp_path):
    plan = yaml.safe_load((REPO / "audits" / "digits-simclr.yaml").read_text())
    plan["training"].update(
        encoder={"channels": [4, 8], "hidden_dims": [16]},
        pretrain={"method": "rotation", "epochs": 1, "batch_size": 256},
        finetune={"mode": "linear_probe", "label_fraction": 0.2, "epochs": 2, "batch_size": 128, "lr": 0.01},
    )
    plan["checks"] = {"performance": {"n_boot": 50}, "label_efficiency": {"n_boot": 50}, "fairness": {}}
    plan["policy"] = str(REPO / "policies" / "image-classifier.yaml")
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")

    run = run_audit(path, db_url=f"sqlite:///{tmp_path / 'a.db'}", out_root=tmp_path / "out")

    status = {r.check: r.status for r in run.results}
    # images have no columns for the preflight stage to read: it says so and does not apply
    assert status == {"preflight": "skipped", "performance": "measured", "label_efficiency": "measured",
                      "fairness": "skipped"}
    assert run.dataset.task == "image-classification" and len(run.dataset.classes) == 10
    with open(Path(run.out_dir) / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == run.dataset.n_test
    probabilities = [float(rows[0][f"p_{c}"]) for c in run.dataset.classes]
    assert abs(sum(probabilities) - 1) < 1e-5
    assert float(rows[0]["score"]) == max(probabilities)
    card = (Path(run.out_dir) / "model_card.md").read_text()
    assert 'type: "image-classification"' in card and "tabular-classification" not in card  # front matter: quoted
