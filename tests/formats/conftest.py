"""One fast, real audit shared by the format tests: Adult rows as CSV files with a data manifest
(source, licence, creator), datasheet answers, a signing key, and `--mlflow` to a SQLite
tracking store in the test's folder."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from govssl.cli import main
from tests.conftest import fast_plan_data

SOURCE = "UCI Machine Learning Repository, Adult, https://archive.ics.uci.edu/dataset/2/adult"
CREATOR = "Barry Becker and Ronny Kohavi"
ANSWERS = {
    "motivation.01": "Predicting whether income exceeds $50K/yr from census attributes.",
    "collection.01": "Extracted from the 1994 U.S. Census database.",
    "uses.04": "Census categories for race and sex are coarse; women and non-white groups are under-represented.",
    "uses.05": "Decisions about individual people (credit, hiring, benefits).",
    "maintenance.01": "The UCI Machine Learning Repository hosts it; no updates are planned.",
}


def cli(*argv: str) -> tuple[int, str, str]:
    """`govssl ARGV` in-process without capsys (usable in module and session fixtures)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as info, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        main(list(argv))
    return info.value.code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="session")
def formats_run(tmp_path_factory, adult_csvs):
    """The audit: its folder, store URL, run id, run folder, evidence.json, public key and MLflow URI."""
    folder = tmp_path_factory.mktemp("formats")
    for csv in adult_csvs:
        shutil.copy(csv, folder / csv.name)
    code, _, err = cli("data", "manifest", str(folder / "train.csv"), str(folder / "test.csv"),
                       "--out", str(folder / "manifest.json"), "--source", SOURCE, "--license", "CC-BY-4.0",
                       "--creator", CREATOR, "--notes", "Rows sampled from the 1994 Census extract.")
    assert code == 0, err
    code, _, err = cli("keys", "generate", "--out", str(folder / "signer"))
    assert code == 0, err
    (folder / "datasheet.yaml").write_text(yaml.safe_dump(ANSWERS), encoding="utf-8")
    plan = fast_plan_data(folder / "train.csv", folder / "test.csv", name="adult-formats")
    plan["dataset"] |= {"manifest": "manifest.json", "datasheet": "datasheet.yaml"}
    plan["provenance"] = {"signing_key": "signer.key"}
    plan["model_card"] |= {"intended_users": ["loan officers in tests"],
                           "ethical_considerations": [{"name": "income proxies sex and race",
                                                       "mitigation": "audited per group"}]}
    (folder / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    db = f"sqlite:///{folder / 'audit.db'}"
    mlflow_uri = f"sqlite:///{folder / 'mlflow.db'}"
    code, out, err = cli("audit", str(folder / "plan.yaml"), "--db", db, "--out", str(folder / "out"), "--quiet",
                         "--mlflow", mlflow_uri)
    assert code in (0, 1), err
    run_dir = next((folder / "out").iterdir())
    evidence = json.loads((run_dir / "evidence.json").read_text(encoding="utf-8"))
    return {"folder": folder, "db": db, "run_id": run_dir.name, "run_dir": run_dir, "evidence": evidence,
            "code": code, "out": out, "err": err, "key": folder / "signer.pub", "mlflow": mlflow_uri,
            "plan": folder / "plan.yaml"}


def copy_store(formats_run, tmp_path: Path) -> str:
    """A private copy of the shared store (SQLite's backup API: the WAL file holds recent writes)."""
    import sqlite3

    source = sqlite3.connect(formats_run["folder"] / "audit.db")
    target = sqlite3.connect(tmp_path / "copy.db")
    source.backup(target)
    source.close()
    target.close()
    return f"sqlite:///{tmp_path / 'copy.db'}"
