"""A store holding a passing, a blocked and a waived audit and a monitoring result of the passing
one, made once per session with the real CLI on a quick plan (4,000 Adult rows; performance,
fairness, a small robustness and privacy check), for the dashboard's browser tests."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import yaml

from tests.conftest import fast_plan_data

SCRIPT = "<script>alert('govssl')</script>"
POLICY = {
    "policy": "web-gate", "version": 1,
    "rules": [
        {"id": "auc", "check": "performance", "metric": "roc_auc", "min": 0.6, "severity": "block",
         "rmf": ["MEASURE 2.5"], "rationale": "The model must rank incomes better than chance."},
        {"id": "near-perfect", "check": "performance", "metric": "accuracy", "min": 0.99, "use": "ci_low",
         "severity": "block", "rmf": ["MEASURE 2.3"],
         "rationale": f"Accuracy must be near perfect (deliberately out of reach) {SCRIPT}"},
        {"id": "robustness-floor", "check": "robustness", "metric": "robust_accuracy", "min": 0.3,
         "severity": "warn", "rmf": ["MEASURE 2.7"], "rationale": "Attacks must not wreck the model."},
    ],
}


@pytest.fixture(scope="session")
def web_store(tmp_path_factory, adult_csvs):
    folder = tmp_path_factory.mktemp("web-store")
    blocking = folder / "blocking.yaml"
    blocking.write_text(yaml.safe_dump(POLICY, sort_keys=False))
    lenient = folder / "lenient.yaml"
    lenient.write_text(yaml.safe_dump({**POLICY, "policy": "web-lenient",
                                       "rules": [POLICY["rules"][0], POLICY["rules"][2]]}, sort_keys=False))
    plan = fast_plan_data(*adult_csvs)
    plan["name"] = f"adult-web {SCRIPT}"
    plan["checks"]["robustness"] = {"eps": [0.05, 0.1], "attacks": ["fgsm", "pgd"], "pgd_steps": 3, "max_rows": 200}
    plan["checks"]["privacy"] = {"max_rows": 300}
    (folder / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    db = f"sqlite:///{folder / 'audit.db'}"
    ids = {}
    for name, policy in (("passed", lenient), ("blocked", blocking), ("waived", blocking)):
        code, out, err = cli("audit", str(folder / "plan.yaml"), "--policy", str(policy), "--db", db,
                                 "--out", str(folder / "out"), "--quiet", "--json")
        assert code in (0, 1), err
        ids[name] = json.loads(out)["run_id"]
    code, _, err = cli("waive", "--run", ids["waived"], "--rule", "near-perfect", "--approver",
                           "Dana <Risk> Officer", "--reason", "pilot with human review", "--expires", "2099-12-31",
                           "--db", db)
    assert code == 0, err
    # a monitoring result of the passing run: a batch of the plan's own test rows
    import pandas as pd

    pd.read_csv(adult_csvs[1]).sample(1000, random_state=3).to_csv(folder / "batch.csv", index=False)
    code, out, err = cli("monitor", ids["passed"], "--data", str(folder / "batch.csv"), "--db", db, "--json")
    assert code in (0, 1), err
    monitored = json.loads(out)["decision"]["verdict"]
    return {"db": db, "path": folder / "audit.db", "folder": folder, "monitored": monitored, **ids}


def cli(*argv: str) -> tuple[int, str, str]:
    """`govssl ARGV` in-process, for session fixtures (no capsys there): (exit code, stdout, stderr)."""
    from govssl.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            return exc.code, out.getvalue(), err.getvalue()
    raise AssertionError("govssl main() returned without exiting")
