"""The example plan that shows the poisoning check on images needs the built-in digits data."""

from __future__ import annotations

import pytest

from govssl.plan import BUILTIN_DATASETS, load_plan
from tests.conftest import REPO


@pytest.mark.skipif("digits" not in BUILTIN_DATASETS, reason="the built-in digits dataset is not available")
@pytest.mark.slow
def test_digits_backdoor_plan__pattern_backdoor_at_5_percent(tmp_path):
    from govssl import run_audit

    plan = load_plan(REPO / "audits" / "digits-backdoor.yaml")
    run = run_audit(plan, db_url=f"sqlite:///{tmp_path / 'audit.db'}", out_root=tmp_path)
    poisoning = next(r for r in run.results if r.check == "poisoning")
    assert poisoning.status == "measured", poisoning.reason
    by = {(m.metric, m.subject): m for m in poisoning.measurements}
    assert by[("backdoor_success_rate", "rate=0.05")].value > 0.8
    assert 0 <= by[("detector_recall", "activation_clustering penultimate rate=0.05")].value <= 1
    assert by[("best_detector_recall", "rate=0.05")].details["detector"] in ("activation_clustering", "spectral_signature", "spectre")
