"""Data manifests through the command line: every tamper is exit 3 naming the file."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization

from govssl.errors import IntegrityError
from govssl.provenance import canonical_json, content_hash, pae, read_manifest, verify_manifest
from tests.test_cli import run_cli


@pytest.fixture
def signed(tmp_path, capsys, adult_frames):
    """A CSV of 300 Adult rows, a key pair and a manifest of the CSV signed with it."""
    train, _ = adult_frames
    data = tmp_path / "people.csv"
    train.head(300).to_csv(data, index=False)
    code, _, _ = run_cli(capsys, "keys", "generate", "--out", str(tmp_path / "alice"))
    assert code == 0
    manifest = tmp_path / "manifest.json"
    code, out, _ = run_cli(capsys, "data", "manifest", str(data), "--out", str(manifest), "--source", "census extract",
                           "--license", "CC-BY-4.0", "--sign", str(tmp_path / "alice.key"))
    assert code == 0 and "signed" in out
    return {"data": data, "manifest": manifest, "pub": tmp_path / "alice.pub", "dir": tmp_path}


def verify(capsys, signed, *extra):
    code, out, err = run_cli(capsys, "data", "verify", str(signed["manifest"]), *extra)
    return code, out, " ".join(err.split())  # the console wraps long messages


def test_data_verify__untouched_files_verify_with_the_signers_key(capsys, signed):
    code, out, _ = verify(capsys, signed, "--key", str(signed["pub"]))
    assert code == 0 and "1 file(s) verified" in out


def test_manifest__records_hash_size_rows_typed_columns_and_provenance(signed, adult_frames):
    manifest = read_manifest(signed["manifest"])
    entry = manifest["files"][0]
    raw = signed["data"].read_bytes()
    assert entry["path"] == "people.csv"
    assert entry["sha256"] == hashlib.sha256(raw).hexdigest() and entry["size"] == len(raw)
    assert entry["table"]["rows"] == 300
    types = {c["name"]: c["type"] for c in entry["table"]["columns"]}
    assert types["age"] == "integer" and types["sex"] == "string" and len(types) == 15
    assert manifest["source"] == "census extract" and manifest["license"] == "CC-BY-4.0"
    assert manifest["created"] and manifest["signatures"][0]["keyid"]


def _edit(path: Path, change) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(change(lines)))


@pytest.mark.parametrize("tamper, explained", [
    ("byte", "same number of rows (300), different values"),
    ("delete", "1 row(s) fewer"),
    ("append", "1 row(s) more"),
    ("replace", "row(s) fewer"),
])
def test_data_verify__a_changed_data_file_exits_3_naming_it(capsys, signed, adult_frames, tamper, explained):
    data = signed["data"]
    if tamper == "byte":
        raw = bytearray(data.read_bytes())
        at = raw.index(b"Male")
        raw[at] = ord("m")  # one byte
        data.write_bytes(bytes(raw))
    elif tamper == "delete":
        _edit(data, lambda lines: lines[:5] + lines[6:])
    elif tamper == "append":
        _edit(data, lambda lines: lines + [lines[1]])
    else:
        adult_frames[1].head(200).to_csv(data, index=False)  # another file of the same shape
    code, _, err = verify(capsys, signed)
    assert code == 3
    assert str(data.resolve()) in err and explained in err


def test_data_verify__reordered_rows_are_a_change_explained_as_such(capsys, signed):
    """Row order is part of a file's identity (it decides the split): exit 3, but the content
    hash recognises the same rows."""
    _edit(signed["data"], lambda lines: lines[:1] + lines[1:][::-1])
    code, _, err = verify(capsys, signed)
    assert code == 3
    assert "same rows, different order" in err and str(signed["data"].resolve()) in err


def test_data_verify__a_missing_file_exits_3_naming_it(capsys, signed):
    signed["data"].unlink()
    code, _, err = verify(capsys, signed)
    assert code == 3 and "people.csv" in err and "not found" in err


def test_data_verify__manifest_edited_after_signing_exits_3(capsys, signed):
    manifest = json.loads(signed["manifest"].read_text())
    manifest["license"] = "CC0-1.0"
    signed["manifest"].write_text(json.dumps(manifest))
    code, _, err = verify(capsys, signed)
    assert code == 3
    assert "manifest.json" in err and "changed after it was signed" in err


def test_data_verify__wrong_key_exits_3(capsys, signed):
    code, _, _ = run_cli(capsys, "keys", "generate", "--out", str(signed["dir"] / "mallory"))
    assert code == 0
    code, _, err = verify(capsys, signed, "--key", str(signed["dir"] / "mallory.pub"))
    assert code == 3 and "not signed by the key in" in err and "mallory.pub" in err


def test_data_verify__unsigned_manifest_with_key_exits_3(capsys, signed):
    manifest = json.loads(signed["manifest"].read_text())
    manifest["signatures"] = []
    signed["manifest"].write_text(json.dumps(manifest))
    assert verify(capsys, signed)[0] == 0  # the files are intact
    code, _, err = verify(capsys, signed, "--key", str(signed["pub"]))
    assert code == 3 and "valid signatures: none" in err


def test_manifest_signature__is_ed25519_over_the_dsse_pae_of_the_canonical_body(signed):
    """Checked with the cryptography package directly, PAE bytes written out by hand."""
    manifest = json.loads(signed["manifest"].read_text())
    sig = manifest.pop("signatures")[0]
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    kind = b"application/vnd.govssl.data-manifest+json"
    message = b"DSSEv1 " + str(len(kind)).encode() + b" " + kind + b" " + str(len(body)).encode() + b" " + body
    public = serialization.load_pem_public_key(signed["pub"].read_bytes())
    public.verify(base64.b64decode(sig["sig"]), message)  # raises if invalid
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert sig["keyid"] == hashlib.sha256(raw).hexdigest()


def test_pae__matches_the_dsse_specification_example():
    assert pae("http://example.com/HelloWorld", b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


def test_content_hash__ignores_row_order_and_sees_any_value_or_multiplicity_change():
    frame = pd.DataFrame({"a": ["1", "2", "3"], "b": ["x", "y", ""]})
    same = content_hash(frame)
    assert content_hash(frame.iloc[[2, 0, 1]].reset_index(drop=True)) == same
    assert content_hash(frame.assign(b=["x", "y", "z"])) != same
    assert content_hash(pd.concat([frame, frame.head(1)], ignore_index=True)) != same  # a multiset
    assert content_hash(frame.assign(b=["x", "y", None])) != same  # missing is not empty
    assert content_hash(frame[["b", "a"]]) != same


def test_keys_generate__private_key_is_owner_only_and_never_overwritten(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "keys", "generate", "--out", str(tmp_path / "k"))
    assert code == 0
    assert os.stat(tmp_path / "k.key").st_mode & 0o777 == 0o600
    before = (tmp_path / "k.key").read_bytes()
    assert before.decode() not in out  # the terminal shows ids and paths, never the key
    code, _, err = run_cli(capsys, "keys", "generate", "--out", str(tmp_path / "k"))
    assert code == 2 and "k.key" in err and "refusing to overwrite" in err
    assert (tmp_path / "k.key").read_bytes() == before


def test_data_manifest__bad_key_or_missing_file_exits_2(capsys, tmp_path, signed):
    code, _, err = run_cli(capsys, "data", "manifest", str(signed["data"]), "--out", str(tmp_path / "m.json"),
                           "--sign", str(signed["pub"]))
    assert code == 2 and "alice.pub" in err and "private key" in err
    code, _, err = run_cli(capsys, "data", "manifest", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "m.json"))
    assert code == 2 and "absent.csv" in err
    code, _, err = run_cli(capsys, "data", "manifest", str(signed["data"]), "--out", str(tmp_path / "no" / "m.json"))
    assert code == 2 and "cannot write the manifest" in err


def test_verify_manifest__shipped_adult_manifest_verifies_and_matches_the_published_hashes():
    from govssl._resources import datasets_dir

    report = verify_manifest(datasets_dir() / "adult" / "manifest.json")
    assert [Path(f["path"]).name for f in report.files] == ["adult.data.gz", "adult.test.gz"]
    assert [t["rows"] for t in report.tables] == [32561, 16281]  # adult.names: train=32561, test=16281
    assert report.license == "CC-BY-4.0" and "doi:10.24432/C5XW20" in report.source


def test_verify_manifest__raises_integrity_error_listing_every_bad_file(tmp_path):
    from govssl.provenance import build_manifest, write_manifest

    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("x,y\n1,2\n3,4\n")
    write_manifest(build_manifest([tmp_path / "a.csv", tmp_path / "b.csv"], base=tmp_path), tmp_path / "m.json")
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "b.csv").write_text("x,y\n3,4\n1,2\n")
    with pytest.raises(IntegrityError) as info:
        verify_manifest(tmp_path / "m.json")
    assert str(info.value).startswith(str((tmp_path / "a.csv").resolve()))
    assert len(info.value.problems) == 2 and "same rows, different order" in info.value.problems[1]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda m: m.update(signatures=["abc"]), "signatures[0]"),
        (lambda m: m["files"][0].update(table="x"), "files[0].table"),
        (lambda m: m["files"][0].update(table={"columns": ["a", "b"]}), "files[0].table"),
    ],
)
def test_data_verify__malformed_manifest_exits_2_naming_the_key(capsys, tmp_path, edit, key):
    import json as _json

    data = tmp_path / "d.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    manifest = tmp_path / "m.json"
    code, _, _ = run_cli(capsys, "data", "manifest", str(data), "--out", str(manifest))
    assert code == 0
    content = _json.loads(manifest.read_text())
    edit(content)
    manifest.write_text(_json.dumps(content))
    code, _, err = run_cli(capsys, "data", "verify", str(manifest))
    assert code == 2 and key in err and "Traceback" not in err
