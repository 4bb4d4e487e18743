"""`report` after a waiver writes new documents beside the stored ones and records them in the
chain; `diff` keys rules by id and separates status changes from moved values; `runs` says when
filters match nothing; `export` carries every artifact file but the model. Through the CLI, on
SQLite and PostgreSQL, with hand-made runs whose files are on disk."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from govssl.policy.model import Decision
from govssl.records import Artifact
from govssl.store import AuditStore

from tests.conftest import run_cli

from .test_store import make_run

R1, R2 = "20240501T090000Z-0000a1", "20240503T090000Z-0000b2"  # run ids as govssl makes them


def one_line(text: str) -> str:
    return " ".join(text.split())  # the console wraps long lines


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def stored(backend, tmp_path):
    """R1 (blocked by fairness-equalized-odds) with its documents, predictions and chart in its
    own folder, as an audit leaves them; R2 of the same model, also blocked."""
    runs = []
    for run_id, created in ((R1, "2024-05-01T09:00:00+00:00"), (R2, "2024-05-03T09:00:00+00:00")):
        run = make_run(tmp_path, run_id, created, non_finite=False)
        folder = Path(run.out_dir)
        folder.mkdir(parents=True)
        files = {"model_card.md": "# Model card\nstored\n", "evidence.json": "{}\n",
                 "predictions.csv": "row,p\n0,0.25\n", "robustness.svg": "<svg/>\n"}
        kinds = {"model_card.md": "model_card", "evidence.json": "evidence", "predictions.csv": "predictions",
                 "robustness.svg": "chart"}
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        run.artifacts = [run.artifacts[0], *(Artifact.of(kinds[name], folder / name) for name in files)]
        runs.append(run)
    store = AuditStore(backend.url)
    for run in runs:
        store.save(run)
    store.close()
    return runs


def waive(capsys, backend, run_id=R1) -> str:
    code, out, err = run_cli(capsys, "waive", "--run", run_id, "--rule", "fairness-equalized-odds", "--approver",
                             "Dana Reviewer", "--reason", "gap accepted for the pilot", "--expires", "2999-01-01",
                             "--db", backend.url)
    assert code == 0, (out, err)
    return one_line(out).split("waiver ", 1)[1].split(":", 1)[0]


def test_report__after_a_waiver_writes_a_new_folder_recorded_in_the_chain(capsys, backend, stored, tmp_path):
    run = stored[0]
    folder = Path(run.out_dir)
    before = {p: p.read_bytes() for p in folder.iterdir()}
    waiver_id = waive(capsys, backend)
    code, out, err = run_cli(capsys, "report", R1, "--db", backend.url)
    assert code == 0, (out, err)
    assert "decision of run" in out and "PASS" in out and waiver_id in out
    assert {p: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # stored documents untouched
    (new,) = (folder / "reports").iterdir()
    assert sorted(p.name for p in new.iterdir()) == sorted([
        "model_card.md", "rmf_report.md", "datasheet.md", "model_card.html", "rmf_report.html", "datasheet.html",
        "model_card.json", "evidence.json", "annex_iv.md", "annex_iv.html",
    ])
    card = (new / "model_card.md").read_text(encoding="utf-8")
    assert "Dana Reviewer" in card and "gap accepted for the pilot" in card

    code, out, err = run_cli(capsys, "verify", "--db", backend.url)
    assert code == 0, (out, err)
    report = json.loads(run_cli(capsys, "verify", "--db", backend.url, "--json")[1])
    assert report["files_checked"] == 2 * 4 + 10 + 2  # the run folders' files, the new documents, the models

    (rendering,) = AuditStore(backend.url, read_only=True).renderings(R1)
    assert rendering["folder"] == str(new)
    assert rendering["waiver_ids"] == [waiver_id] and rendering["attestation_positions"] == [0, 1]
    shown = json.loads(run_cli(capsys, "show", R1, "--db", backend.url, "--json")[1])
    by_position = [a["path"] for a in shown["artifacts"]]
    assert sorted(by_position[i] for i in rendering["artifact_positions"]) == sorted(str(p) for p in new.iterdir())
    code, out, _ = run_cli(capsys, "show", R1, "--db", backend.url)
    assert code == 0 and str(new / "model_card.md") in one_line(out)

    target = tmp_path / "r1.zip"
    code, out, err = run_cli(capsys, "export", R1, "--out", str(target), "--db", backend.url)
    assert code == 0, (out, err)
    with zipfile.ZipFile(target) as archive:
        names = set(archive.namelist())
        assert f"{R1}/documents/reports/{new.name}/model_card.md" in names
        assert f"{R1}/documents/model_card.md" in names
        assert archive.read(f"{R1}/documents/reports/{new.name}/model_card.md") == (new / "model_card.md").read_bytes()


def test_report__out_never_replaces_a_stored_artifact(capsys, backend, stored, tmp_path):
    folder = Path(stored[0].out_dir)
    before = {p: p.read_bytes() for p in folder.iterdir()}
    code, _, err = run_cli(capsys, "report", R1, "--out", str(folder), "--format", "json", "--db", backend.url)
    assert code == 2 and "--out" in err and str(folder / "evidence.json") in one_line(err)
    assert {p: p.read_bytes() for p in folder.iterdir()} == before
    rows = backend.count_rows()

    docs = tmp_path / "docs"
    code, out, err = run_cli(capsys, "report", R1, "--out", str(docs), "--format", "md", "--db", backend.url)
    assert code == 0, (out, err)
    assert backend.count_rows()["artifacts"] == rows["artifacts"] + 4  # model card, RMF report, datasheet, Annex IV
    written = {p: p.read_bytes() for p in docs.iterdir()}
    code, _, err = run_cli(capsys, "report", R1, "--out", str(docs), "--format", "md", "--db", backend.url)
    assert code == 2 and "never replaced" in one_line(err)
    assert {p: p.read_bytes() for p in docs.iterdir()} == written
    code, out, err = run_cli(capsys, "verify", "--db", backend.url)
    assert code == 0, (out, err)


def test_report__changed_row_writes_no_folder(capsys, backend, stored):
    backend.raw_sql(f"UPDATE rule_outcomes SET status = 'pass' WHERE id = '{R1}/o1'")
    code, _, err = run_cli(capsys, "report", R1, "--db", backend.url)
    assert code == 3 and "the row was changed" in one_line(err)
    assert not (Path(stored[0].out_dir) / "reports").exists()


def test_export__every_artifact_file_but_the_model_with_checksums(capsys, backend, stored, tmp_path):
    target = tmp_path / "r1.zip"
    code, out, err = run_cli(capsys, "export", R1, "--out", str(target), "--db", backend.url)
    assert code == 0, (out, err)
    with zipfile.ZipFile(target) as archive:
        names = sorted(archive.namelist())
        documents = [f"{R1}/documents/{name}" for name in
                     ("evidence.json", "model_card.md", "predictions.csv", "robustness.svg")]
        assert names == sorted([f"{R1}/run.json", f"{R1}/attestations.json", f"{R1}/SHA256SUMS", *documents])
        sums = dict(reversed(line.split("  ")) for line in archive.read(f"{R1}/SHA256SUMS").decode().splitlines())
        assert sorted(sums) == sorted(name.split("/", 1)[1] for name in names if not name.endswith("SHA256SUMS"))
        for name, digest in sums.items():
            assert hashlib.sha256(archive.read(f"{R1}/{name}")).hexdigest() == digest
        assert archive.read(f"{R1}/documents/predictions.csv") == b"row,p\n0,0.25\n"
    assert not any("model.safetensors" in name for name in names)


def test_diff__a_rule_is_one_row_and_same_status_is_not_a_change(capsys, backend, tmp_path):
    a = make_run(tmp_path, R1, "2024-05-01T09:00:00+00:00", non_finite=False)
    b = make_run(tmp_path, R2, "2024-05-03T09:00:00+00:00", non_finite=False)
    performance, fairness, missing = b.decision.outcomes
    moved = dataclasses.replace(fairness, subject="race", observed=0.2)  # still fail, worst subject moved
    b.decision = Decision((dataclasses.replace(performance, status="fail", observed=0.7), moved, missing))
    store = AuditStore(backend.url)
    store.save(a)
    store.save(b)
    store.close()
    code, out, _ = run_cli(capsys, "diff", R1, R2, "--db", backend.url, "--json")
    assert code == 0
    result = json.loads(out)
    assert [r["rule_id"] for r in result["rules_changed"]] == ["performance-accuracy"]
    assert result["rules_changed"][0]["status_a"] == "pass" and result["rules_changed"][0]["status_b"] == "fail"
    assert result["rules_moved"] == [{
        "rule_id": "fairness-equalized-odds", "status_a": "fail", "status_b": "fail",
        "subject_a": "sex", "subject_b": "race", "observed_a": 0.112, "observed_b": 0.2,
    }]
    code, out, _ = run_cli(capsys, "diff", R1, R2, "--db", backend.url)
    text = one_line(out)
    assert code == 0
    changed, _, moved_part = text.partition("same status, value moved")
    assert "rule outcomes that changed" in changed and "performance-accuracy" in changed
    assert "fairness-equalized-odds" not in changed and "fairness-equalized-odds" in moved_part
    assert text.count("fairness-equalized-odds") == 1


def test_runs__filters_that_match_nothing_say_so_with_the_store_count(capsys, backend, stored):
    code, out, _ = run_cli(capsys, "runs", "--decision", "pass", "--db", backend.url)
    text = one_line(out)
    assert code == 0 and "no run matches the filters" in text and "holds 2 run(s)" in text
    assert "no runs in" not in text
    code, out, _ = run_cli(capsys, "runs", "--plan", "nothing", "--since", "2024-05-02", "--db", backend.url)
    assert code == 0 and "holds 2 run(s)" in one_line(out)
