"""`govssl export --format`: the registry of formats, bad input, and runs that no longer verify."""

from __future__ import annotations

import shutil
import sqlite3
import zipfile

import pytest

from govssl.formats import DEFAULT_FORMAT, FORMATS, register_format
from tests.conftest import run_cli
from tests.formats.conftest import copy_store

FORMAT_NAMES = ["zip", "cyclonedx", "croissant"]


def test_formats__zip_is_the_default_and_each_format_is_one_registry_entry():
    assert DEFAULT_FORMAT == "zip"
    assert list(FORMATS) == FORMAT_NAMES
    with pytest.raises(ValueError, match="registered twice"):
        register_format("zip", "again", "govssl.formats._zip:export")


def test_export__unknown_format_exits_2_listing_the_formats(capsys, formats_run, tmp_path):
    code, out, err = run_cli(capsys, "export", formats_run["run_id"], "--format", "spdx", "--out",
                             str(tmp_path / "x"), "--db", formats_run["db"])
    err = " ".join(err.split())
    assert code == 2 and "'spdx' is not one of" in err
    for name in FORMAT_NAMES:
        assert f"'{name}'" in err
    assert not (tmp_path / "x").exists()


def test_export__help_describes_every_format(capsys):
    code, out, _ = run_cli(capsys, "export", "--help")
    text = " ".join(out.split())
    assert code == 0
    for fmt in FORMATS.values():
        assert f"{fmt.name}: {fmt.summary}" in text


def test_export__default_format_is_still_the_zip(capsys, formats_run, tmp_path):
    target = tmp_path / "run.zip"
    code, out, err = run_cli(capsys, "export", formats_run["run_id"], "--out", str(target), "--db", formats_run["db"])
    assert code == 0, err
    assert "including SHA256SUMS" in out
    names = zipfile.ZipFile(target).namelist()
    assert f"{formats_run['run_id']}/documents/test-result.intoto.json" in names


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_export__a_tampered_store_exits_3_and_writes_nothing(capsys, formats_run, tmp_path, name):
    db = copy_store(formats_run, tmp_path)
    with sqlite3.connect(tmp_path / "copy.db") as conn:
        changed = conn.execute("UPDATE measurements SET value_json = '0.99' WHERE metric = 'accuracy' "
                               "AND subject = ''").rowcount
    assert changed == 1
    target = tmp_path / "out.file"
    code, _, err = run_cli(capsys, "export", formats_run["run_id"], "--format", name, "--out", str(target), "--db", db)
    assert code == 3, err
    assert "ledger" in err or "chain" in err
    assert not target.exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_export__a_file_changed_since_the_audit_exits_3_naming_it(capsys, formats_run, tmp_path, name):
    """The run folder copied, one document changed: the store's sha256 no longer holds for it."""
    db = copy_store(formats_run, tmp_path)
    run_dir = formats_run["run_dir"]
    saved = tmp_path / "saved-card.json"
    shutil.copy(run_dir / "model_card.json", saved)
    target = tmp_path / "out.file"
    try:
        (run_dir / "model_card.json").write_text("{}\n")
        code, _, err = run_cli(capsys, "export", formats_run["run_id"], "--format", name, "--out", str(target),
                               "--db", db)
    finally:
        shutil.copy(saved, run_dir / "model_card.json")
    err = " ".join(err.split())
    assert code == 3 and "model_card.json" in err and "changed" in err, err
    assert not target.exists() and not list(tmp_path.glob("*.partial"))


def test_export__a_missing_out_folder_exits_2(capsys, formats_run, tmp_path):
    target = tmp_path / "no" / "such" / "bom.json"
    code, _, err = run_cli(capsys, "export", formats_run["run_id"], "--format", "cyclonedx", "--out", str(target),
                           "--db", formats_run["db"])
    assert code == 2 and str(target) in " ".join(err.split()) and "Traceback" not in err
