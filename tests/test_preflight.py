"""Preflight through the CLI: a table with personal data, identifiers, a post-outcome column and a
duplicate header stops before training, and no personal value reaches any file or the store."""

from __future__ import annotations

import csv
import re
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from tests.conftest import REPO, run_cli

FIRST = ["Miguel", "Ana", "Kevin", "Latoya", "Bogdan", "Priya", "Dwight", "Wendell", "Rosa", "Imani", "Tobias",
         "Shanice", "Ezra", "Marisol", "Dmitri", "Keisha", "Anders", "Yusuf", "Colette", "Rashad"]
LAST = ["Hernandez", "Okafor", "Lindqvist", "Washburn", "Petrov", "Ramaswamy", "Castellanos", "Abernathy",
        "Whitfield", "Nakamura", "Ostrowski", "Delacroix", "Mbeki", "Fairbanks", "Quintero", "Haverford"]
N = 2000


def _people(seed: int = 7) -> dict[str, list]:
    """About 2,000 people with names, dates of birth and case numbers, the usual features, an
    outcome and a column recorded after it (is_recid: the outcome itself, written later)."""
    rng = np.random.default_rng(seed)
    first = rng.choice(FIRST, N)
    last = rng.choice(LAST, N)
    year = rng.integers(1950, 2000, N)
    month, day = rng.integers(1, 13, N), rng.integers(1, 29, N)
    age = 2013 - year
    priors = rng.poisson(2.0, N)
    sex = rng.choice(["Male", "Female"], N, p=[0.8, 0.2])
    race = rng.choice(["African-American", "Caucasian", "Hispanic", "Other"], N, p=[0.5, 0.35, 0.1, 0.05])
    charge = rng.choice(["F", "M"], N, p=[0.65, 0.35])
    logit = -1.0 + 0.25 * priors - 0.03 * (age - 35) + 0.3 * (charge == "F")
    y = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(int)
    return {
        "id": list(range(1, N + 1)),
        "name": [f"{f} {l}" for f, l in zip(first, last)],
        "first": list(first),
        "last": list(last),
        "dob": [f"{y_:04d}-{m:02d}-{d:02d}" for y_, m, d in zip(year, month, day)],
        "c_case_number": [f"{13000000 + i * 37:08d}CF10A" for i in range(N)],
        "sex": list(sex),
        "race": list(race),
        "age": [int(a) for a in age],
        "priors_count": [int(p) for p in priors],
        "c_charge_degree": list(charge),
        "decile_score": [int(min(10, max(1, round(1 + p * 1.5 + rng.normal())))) for p in priors],
        "is_recid": list(y),
        "two_year_recid": list(y),
    }


def _write_csv(path: Path, columns: dict[str, list], duplicate: str | None = None) -> Path:
    names = list(columns)
    header = names + ([duplicate] if duplicate else [])
    rows = zip(*(columns[n] for n in names), *([columns[duplicate]] if duplicate else []))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _plan(data: Path, out: Path, **dataset) -> dict:
    return {
        "name": "recidivism",
        "seed": 0,
        "dataset": {"path": str(data), "target": "two_year_recid", "positive_label": 1,
                    "sensitive": ["sex", "race"], **dataset},
        "training": {"encoder": {"hidden_dims": [32]}, "pretrain": {"method": "none"},
                     "finetune": {"epochs": 2, "batch_size": 256, "label_fraction": 1.0}, "baseline": False},
        # the README's template: performance and fairness only
        "checks": {"performance": {"n_boot": 50}, "fairness": {"n_boot": 50}},
        "policy": str(REPO / "policies" / "default.yaml"),
        "output": {"dir": str(out)},
    }


def _personal_values(columns: dict[str, list]) -> set[str]:
    return set(columns["name"]) | set(columns["first"]) | set(columns["last"]) | set(columns["dob"]) \
        | set(columns["c_case_number"])


def test_preflight__duplicate_header_exits_2_naming_file_and_header(tmp_path, write_plan, capsys):
    data = _write_csv(tmp_path / "people.csv", _people(), duplicate="decile_score")
    plan = write_plan(_plan(data, tmp_path / "out", drop=["decile_score"]))
    db = f"sqlite:///{tmp_path / 'audit.db'}"

    code, out, err = run_cli(capsys, "audit", str(plan), "--db", db, "-q")

    assert code == 2
    assert str(data) in err and "'decile_score'" in err and "duplicate header" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """The default audit of the people file: ends at preflight. (exit, stdout, paths, values)"""
    tmp = tmp_path_factory.mktemp("preflight")
    columns = _people()
    data = _write_csv(tmp / "people.csv", columns)
    plan = tmp / "plan.yaml"
    import yaml

    plan.write_text(yaml.safe_dump(_plan(data, tmp / "out")), encoding="utf-8")
    db = tmp / "audit.db"
    from govssl.cli import main

    with pytest.raises(SystemExit) as info:
        main(["audit", str(plan), "--db", f"sqlite:///{db}", "-q", "--json"])
    return info.value.code, tmp, db, _personal_values(columns)


def test_preflight__personal_data_stops_the_audit_before_training(stopped, capsys):
    code, tmp, db, _ = stopped
    assert code == 1
    (run_dir,) = list((tmp / "out").iterdir())
    assert not (run_dir / "model.safetensors").exists() and not (run_dir / "predictions.csv").exists()

    code, out, _ = run_cli(capsys, "show", run_dir.name, "--db", f"sqlite:///{db}")
    assert code == 0, out
    assert "not trained" in out and "BLOCKED" in out
    import json

    code, out, _ = run_cli(capsys, "show", run_dir.name, "--db", f"sqlite:///{db}", "--json")
    run = json.loads(out)
    assert run["training"]["trained"] is False and run["training"]["seconds"] == 0
    assert run["training"]["model_sha256"] == "" and [c["check"] for c in run["checks"]] == ["preflight"]
    outcomes = {o["rule_id"]: o for o in run["decision"]["outcomes"]}
    assert outcomes["preflight-personal-data"]["status"] == "fail"
    assert outcomes["preflight-identifiers-as-input"]["status"] == "fail"
    assert outcomes["fairness-equalized-odds"]["status"] == "skipped"
    messages = " | ".join(o["message"] for o in run["decision"]["outcomes"])
    # every such column is named: personal data, identifiers, leakage, sensitive inputs
    for column in ("name", "first", "last", "dob", "c_case_number", "id", "is_recid", "sex", "race"):
        assert re.search(rf"\b{column}\b", messages), column
    assert re.search(r"\bid\b", outcomes["preflight-identifiers-as-input"]["message"])
    assert outcomes["preflight-leakage"]["status"] == "fail" and "is_recid" in outcomes["preflight-leakage"]["message"]


def test_preflight__no_personal_value_in_any_artifact_export_or_store_row(stopped, capsys):
    code, tmp, db, values = stopped
    (run_dir,) = list((tmp / "out").iterdir())
    assert len(values) > 2000

    def leaks(text: str) -> list[str]:
        return sorted(v for v in values if v in text)

    assert len(leaks((tmp / "people.csv").read_text(encoding="utf-8"))) == len(values)  # the search finds them
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert leaks(path.read_text(encoding="utf-8", errors="replace")) == [], path

    zip_path = tmp / "export.zip"
    code, out, err = run_cli(capsys, "export", run_dir.name, "--db", f"sqlite:///{db}", "--out", str(zip_path))
    assert code == 0, out + err
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.namelist()
        for name in zf.namelist():
            assert leaks(zf.read(name).decode("utf-8", errors="replace")) == [], name

    con = sqlite3.connect(db)
    tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
    assert "runs" in tables
    rows = 0
    for table in tables:
        for row in con.execute(f'select * from "{table}"'):
            rows += 1
            assert leaks(" ".join(str(v) for v in row)) == [], table
    con.close()
    assert rows > 5


def test_gate_and_waive_refuse_a_run_that_trained_nothing(stopped, capsys, tmp_path):
    code, tmp, db, _ = stopped
    (run_dir,) = list((tmp / "out").iterdir())
    code, out, err = run_cli(capsys, "waive", "--run", run_dir.name, "--rule", "preflight-personal-data",
                             "--approver", "x", "--reason", "y", "--expires", "2999-01-01", "--db", f"sqlite:///{db}")
    assert code == 2 and "ended at preflight" in err
    code, out, err = run_cli(capsys, "gate", "--model", str(tmp / "people.csv"), "--db", f"sqlite:///{db}")
    assert code == 1 and "BLOCKED" in out


def _feature_names(model: Path) -> list[str]:
    import json

    with safe_open(str(model), "pt") as fh:
        metadata = fh.metadata()
    return json.loads(metadata["govssl_architecture"])["feature_names"]


def test_preflight__declared_and_dropped_columns_train_without_their_values(tmp_path, write_plan, capsys):
    columns = _people()
    rng = np.random.default_rng(3)
    # a rare category level (4 rows) next to common ones: the rare one must not reach the model file
    charge = rng.choice(["Battery", "Grand Theft", "Possession"], N).astype(object)
    charge[[5, 50, 500, 1500]] = "Trespass Unicorn Pasture"
    columns["c_charge_desc"] = list(charge)
    data = _write_csv(tmp_path / "people.csv", columns)
    plan = write_plan(_plan(data, tmp_path / "out", drop=["id", "is_recid", "c_case_number"],
                            personal_data=["name", "first", "last", "dob"], sensitive_as_input=False))
    db = f"sqlite:///{tmp_path / 'audit.db'}"

    code, out, err = run_cli(capsys, "audit", str(plan), "--db", db, "-q", "--json")

    import json

    run = json.loads(out)
    outcomes = {o["rule_id"]: o for o in run["decision"]["outcomes"]}
    for rule in ("preflight-personal-data", "preflight-identifiers-as-input", "preflight-leakage",
                 "preflight-sensitive-as-input", "preflight-personal-data-as-input"):
        assert outcomes[rule]["status"] == "pass", outcomes[rule]
    assert run["training"]["trained"] is True and run["training"]["seconds"] > 0
    assert run["training"]["category_levels"]["min_rows"] == 10
    assert run["training"]["category_levels"]["columns"] == {"c_charge_degree": "training rows",
                                                             "c_charge_desc": "training rows"}
    (run_dir,) = list((tmp_path / "out").iterdir())
    names = _feature_names(run_dir / "model.safetensors")
    assert "c_charge_desc=Battery" in names and "c_charge_desc=(other)" in names
    assert not any("Unicorn" in n for n in names)
    assert not (run_dir / "model.safetensors").read_bytes().count(b"Unicorn")
    # sensitive attributes still audited, not model inputs
    assert not any(n.startswith(("sex", "race")) for n in names)
    assert any(m["check"] == "fairness" for m in run["checks"]) and outcomes["fairness-equalized-odds"]["status"] != "skipped"
    feature_columns = {n.split("=")[0] for n in names}
    assert feature_columns == {"age", "priors_count", "decile_score", "c_charge_degree", "c_charge_desc"}


def test_preflight__levels_under_dp_are_declared_or_privately_selected(tmp_path, write_plan, capsys):
    import json

    columns = _people()
    data = _write_csv(tmp_path / "people.csv", columns)
    base = dict(drop=["id", "is_recid", "c_case_number", "name", "first", "last", "dob"])
    records = []
    for i, levels in enumerate(({}, {"c_charge_degree": ["F", "M"], "sex": ["Male", "Female"],
                                      "race": ["African-American", "Caucasian", "Hispanic", "Other"]})):
        plan_data = _plan(data, tmp_path / f"out{i}", **base, levels=levels)
        plan_data["training"]["dp"] = {"enabled": True, "target_epsilon": 3.0}
        code, out, err = run_cli(capsys, "audit", str(write_plan(plan_data, f"plan{i}.yaml")), "--db",
                                 f"sqlite:///{tmp_path / 'audit.db'}", "-q", "--json")
        records.append(json.loads(out)["training"]["category_levels"])
    read, declared = records
    # undeclared levels under DP: a private selection, its cost composed into epsilon
    assert read["private"] is True and set(read["columns"].values()) == {"training rows, private selection"}
    assert "composed into the epsilon" in read["note"] and read["selection"]["columns"] == 3
    assert declared["private"] is True and set(declared["columns"].values()) == {"declared"}
    assert "selection" not in declared


def test_strict_pack__blocks_at_preflight_on_sensitive_inputs_and_passes_it_without(tmp_path, write_plan, capsys):
    import json

    data = _write_csv(tmp_path / "people.csv", _people())
    base = dict(drop=["id", "is_recid", "c_case_number", "name", "first", "last", "dob"])
    verdicts = {}
    for as_input in (True, False):
        plan_data = _plan(data, tmp_path / f"out-{as_input}", **base, sensitive_as_input=as_input)
        plan_data["policy"] = "strict"
        code, out, err = run_cli(capsys, "audit", str(write_plan(plan_data, f"plan-{as_input}.yaml")), "--db",
                                 f"sqlite:///{tmp_path / 'audit.db'}", "-q", "--json")
        run = json.loads(out)
        outcomes = {o["rule_id"]: o["status"] for o in run["decision"]["outcomes"]}
        verdicts[as_input] = (code, outcomes, run["training"]["trained"])
    code, outcomes, trained = verdicts[True]
    assert code == 1 and trained is False and outcomes["preflight-sensitive-as-input"] == "fail"
    code, outcomes, trained = verdicts[False]
    assert trained is True
    assert all(outcomes[r] == "pass" for r in ("preflight-personal-data", "preflight-identifiers-as-input",
                                               "preflight-personal-data-as-input", "preflight-leakage",
                                               "preflight-sensitive-as-input")), outcomes


def test_preflight__personal_data_as_input_must_be_declared(tmp_path, write_plan, capsys):
    data = _write_csv(tmp_path / "people.csv", _people())
    plan = write_plan(_plan(data, tmp_path / "out", personal_data_as_input=["dob"]))

    code, out, err = run_cli(capsys, "audit", str(plan), "--db", f"sqlite:///{tmp_path / 'a.db'}", "-q")

    assert code == 2 and "personal_data_as_input" in err and "dob" in err


def test_preflight__categorical_columns_score_as_their_text_does():
    """The out-of-core reader keeps text columns as pandas categoricals: the leakage scores and the
    identifier test computed from their codes equal those of the same values as strings."""
    import numpy as np
    import pandas as pd

    from govssl.preflight import _categorical_scores, _identifier_reasons

    rng = np.random.default_rng(0)
    n = 5_000
    levels = np.array(["a", " a", "b", "c ", None, "", "rare"], dtype=object)
    text = pd.Series(rng.choice(levels, n, p=[0.3, 0.1, 0.3, 0.2, 0.05, 0.04, 0.01]), dtype=object)
    y = rng.integers(0, 2, n)
    as_text = _categorical_scores(text, y, seed=3)
    as_codes = _categorical_scores(text.astype("category"), y, seed=3)
    np.testing.assert_array_equal(as_codes, as_text)
    ids = pd.Series([f"CASE-{i:06d}" for i in rng.permutation(n)], dtype=object)
    assert _identifier_reasons("ref", ids.astype("category"), 2000, 1) == _identifier_reasons("ref", ids, 2000, 1)
    assert _identifier_reasons("ref", ids, 2000, 1)  # near-unique case numbers are found
