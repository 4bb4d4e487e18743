"""Data manifests: what each data file is (sha256, size, rows, typed columns, content hash),
where it came from and under which licence, optionally signed with Ed25519.

Row order. The file's sha256 is what verification decides on, so reordering the rows of a file
*is* a change (exit 3): a different order gives a different split and a different model. The
manifest also records an order-independent content hash of the table (the sorted 64-bit hashes
of its rows, hashed with sha256), so that a mismatch can be explained: "same rows, different
order", rows deleted, rows appended, or values changed. The content hash explains; it never
vouches (64-bit row hashes are not collision-resistant against an adversary; sha256 of the file is).
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from govssl.errors import ConfigError, DataError, IntegrityError
from govssl.provenance._keys import PublicKey, SigningKey, canonical_json
from govssl.records import sha256_file

__all__ = [
    "MANIFEST_TYPE", "MANIFEST_VERSION", "build_manifest", "write_manifest", "read_manifest",
    "sign_manifest", "verify_manifest", "ManifestReport", "content_hash", "READERS",
]

MANIFEST_TYPE = "application/vnd.govssl.data-manifest+json"
MANIFEST_VERSION = 1


def _read_csv(path: Path) -> pd.DataFrame:
    # Every value as its text: the content hash must not depend on type inference.
    return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)


def _read_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def _read_adult(skip_header: bool):
    def read(path: Path) -> pd.DataFrame:
        from govssl.data._builtin import _adult_frame

        return _adult_frame(gzip.decompress(path.read_bytes()), skip_header)

    return read


#: how a file is read as a table; the name is recorded so verification reads it the same way
READERS = {
    "csv": _read_csv,
    "parquet": _read_parquet,
    "builtin-adult-data": _read_adult(False),
    "builtin-adult-test": _read_adult(True),
}


def _reader_for(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    return None


def content_hash(frame: pd.DataFrame) -> str:
    """Order-independent hash of a table: its header, then its rows' hashes sorted (a multiset)."""
    text = frame.astype("string").fillna("\x00")  # missing differs from the empty string
    rows = np.sort(pd.util.hash_pandas_object(text, index=False).to_numpy(dtype=np.uint64))
    digest = hashlib.sha256(canonical_json([str(c) for c in frame.columns]))
    digest.update(rows.astype("<u8").tobytes())
    return digest.hexdigest()


def _column_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_numeric_dtype(series):
        return "integer" if pd.api.types.is_integer_dtype(series) else "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    values = series[series.notna() & (series.astype("string") != "")]
    if len(values) and pd.to_numeric(values, errors="coerce").notna().all():
        numbers = pd.to_numeric(values)
        return "integer" if (numbers == numbers.round()).all() and "." not in "".join(values.astype(str).head(1000)) else "float"
    return "string"


def _table_facts(path: Path, reader: str) -> dict:
    try:
        frame = READERS[reader](path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as a table ({reader}): {exc}") from None
    return {
        "reader": reader,
        "rows": int(len(frame)),
        "columns": [{"name": str(c), "type": _column_type(frame[c])} for c in frame.columns],
        "content_sha256": content_hash(frame),
    }


def _file_entry(path: Path, base: Path, reader: str | None) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    entry = {
        "path": Path(os.path.relpath(path.resolve(), base.resolve())).as_posix(),
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
    }
    reader = reader or _reader_for(path)
    entry["table"] = _table_facts(path, reader) if reader else None
    return entry


def build_manifest(
    files: list[str | Path],
    *,
    base: str | Path,
    source: str = "",
    license: str = "",
    creator: str = "",
    collection_notes: str = "",
    readers: dict[str, str] | None = None,
    created: str | None = None,
) -> dict:
    """The manifest of ``files``; their paths are recorded relative to ``base`` (the manifest's folder).

    ``readers`` maps a file name to a key of READERS where the suffix does not say (built-in data).
    """
    from govssl import __version__

    readers = readers or {}
    return {
        "manifest_version": MANIFEST_VERSION,
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "creator": creator,
        "source": source,
        "license": license,
        "collection_notes": collection_notes,
        "tool": f"govssl {__version__}",
        "files": [_file_entry(Path(f), Path(base), readers.get(Path(f).name)) for f in files],
        "signatures": [],
    }


def _body(manifest: dict) -> bytes:
    return canonical_json({k: v for k, v in manifest.items() if k != "signatures"})


def sign_manifest(manifest: dict, key: SigningKey) -> dict:
    """A copy of ``manifest`` with a signature over everything but the signatures."""
    signed = copy.deepcopy(manifest)
    entry = key.sign(MANIFEST_TYPE, _body(manifest))
    entry["public_key"] = key.public.raw_b64
    signed["signatures"] = [s for s in signed.get("signatures", []) if s.get("keyid") != entry["keyid"]] + [entry]
    return signed


def write_manifest(manifest: dict, path: str | Path) -> Path:
    path = Path(path)
    try:
        path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the manifest: {exc}") from None
    return path


def read_manifest(path: str | Path) -> dict:
    """A manifest file; unreadable or malformed ones raise ConfigError naming the file and key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: manifest file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON manifest: {exc}") from None
    if not isinstance(data, dict) or data.get("manifest_version") != MANIFEST_VERSION:
        raise ConfigError(f"{path}: manifest_version: expected {MANIFEST_VERSION} (a govssl data manifest)")
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise ConfigError(f"{path}: files: expected a non-empty list of files")
    for i, entry in enumerate(files):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), t) for k, t in (("path", str), ("sha256", str), ("size", int))):
            raise ConfigError(f"{path}: files[{i}]: needs path, sha256 and size")
        table = entry.get("table")
        if table is not None and not (
            isinstance(table, dict)
            and isinstance(table.get("columns", []), list)
            and all(isinstance(c, dict) for c in table.get("columns", []))
        ):
            raise ConfigError(f"{path}: files[{i}].table: expected a mapping whose columns are mappings")
    signatures = data.get("signatures", [])
    if not isinstance(signatures, list):
        raise ConfigError(f"{path}: signatures: expected a list")
    for i, sig in enumerate(signatures):
        if not isinstance(sig, dict):
            raise ConfigError(f"{path}: signatures[{i}]: expected a mapping with keyid, public_key and sig")
    return data


@dataclass(frozen=True)
class ManifestReport:
    """What verifying a manifest found: every file matched, and who signed it (valid signatures only)."""

    path: str
    sha256: str  # of the manifest file
    files: tuple[dict, ...]  # {path (absolute), sha256, size}
    signers: tuple[str, ...]  # key ids whose signature verifies
    source: str
    license: str
    creator: str
    collection_notes: str
    created: str
    tables: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def signed(self) -> bool:
        return bool(self.signers)

    def to_dict(self) -> dict:
        return {
            "path": self.path, "sha256": self.sha256, "files": list(self.files),
            "signers": list(self.signers), "source": self.source, "license": self.license,
            "creator": self.creator, "collection_notes": self.collection_notes, "created": self.created,
        }


def _explain(path: Path, entry: dict) -> str:
    """Why a file no longer matches, from the recorded table facts (best effort)."""
    table = entry.get("table")
    if not table or table.get("reader") not in READERS:
        return "its content changed"
    try:
        frame = READERS[table["reader"]](path)
    except Exception:  # a file that no longer parses is explained by the hash alone
        return "it no longer reads as a table"
    rows, recorded = len(frame), table.get("rows")
    if [str(c) for c in frame.columns] != [c.get("name") for c in table.get("columns", [])]:
        return "its columns changed"
    if content_hash(frame) == table.get("content_sha256"):
        return "same rows, different order (row order is part of the file's identity: it decides the split)"
    if isinstance(recorded, int) and rows < recorded:
        return f"{recorded - rows} row(s) fewer than recorded ({rows} instead of {recorded})"
    if isinstance(recorded, int) and rows > recorded:
        return f"{rows - recorded} row(s) more than recorded ({rows} instead of {recorded})"
    return f"same number of rows ({rows}), different values"


def _check_file(base: Path, entry: dict) -> tuple[dict | None, str | None]:
    path = (base / entry["path"]).resolve()
    if not path.is_file():
        return None, f"{path}: listed in the manifest but not found"
    size = path.stat().st_size
    digest = sha256_file(path) if size == entry["size"] else None
    if digest == entry["sha256"]:
        return {"path": str(path), "sha256": digest, "size": size}, None
    found = f"size {size} instead of {entry['size']}" if digest is None else f"sha256 {digest} instead of {entry['sha256']}"
    return None, f"{path}: does not match the manifest ({found}): {_explain(path, entry)}"


def verify_manifest(path: str | Path, key: PublicKey | None = None) -> ManifestReport:
    """Check every file's size and sha256 and every signature; raise IntegrityError naming what differs.

    Each signature must verify with the public key it carries (so an edit after signing is caught
    without any key at hand); with ``key`` the manifest must also carry a valid signature by it.
    """
    path = Path(path)
    manifest = read_manifest(path)
    base = path.resolve().parent
    problems, files = [], []
    for entry in manifest["files"]:
        ok, problem = _check_file(base, entry)
        if problem:
            problems.append(problem)
        else:
            files.append(ok)
    body = _body(manifest)
    signers = []
    for i, sig in enumerate(manifest.get("signatures", [])):
        try:
            public = PublicKey.from_raw_b64(str(sig.get("public_key", "")))
        except ValueError:
            problems.append(f"{path}: signatures[{i}]: the public key is malformed")
            continue
        if public.keyid != sig.get("keyid") or not public.verifies(MANIFEST_TYPE, body, str(sig.get("sig", ""))):
            problems.append(f"{path}: signatures[{i}] (key {str(sig.get('keyid'))[:16]}...) does not verify: "
                            "the manifest was changed after it was signed")
            continue
        signers.append(public.keyid)
    if key is not None and key.keyid not in signers:
        problems.append(f"{path}: not signed by the key in {key.name or 'the given key'} (key {key.keyid[:16]}...); "
                        f"valid signatures: {', '.join(s[:16] + '...' for s in signers) or 'none'}")
    if problems:
        raise IntegrityError(f"{problems[0].split(':')[0]}: manifest {path} does not verify", problems)
    tables = tuple(dict(e.get("table") or {}, path=f["path"]) for e, f in zip(manifest["files"], files))
    return ManifestReport(
        path=str(path.resolve()), sha256=sha256_file(path), files=tuple(files), signers=tuple(signers),
        source=str(manifest.get("source") or ""), license=str(manifest.get("license") or ""),
        creator=str(manifest.get("creator") or ""), collection_notes=str(manifest.get("collection_notes") or ""),
        created=str(manifest.get("created") or ""), tables=tables,
    )


def verify_plan_manifest(plan) -> ManifestReport | None:
    """Verify the manifest an AuditPlan names (built-in data: the one shipped with it) before training.

    Raises IntegrityError if a file differs, a signature fails, or a data file the plan reads is
    not in the manifest. Returns None when a user dataset has no manifest.
    """
    from govssl._resources import datasets_dir

    spec = plan.dataset
    if spec.manifest is not None:
        if spec.path is not None and plan.resolve(spec.path).is_dir():
            raise ConfigError(f"{plan.source_path or 'plan'}: dataset.manifest: manifests list files, and "
                              f"dataset.path is a folder ({plan.resolve(spec.path)}); folder manifests are not "
                              "supported yet: pack the images into an NPZ file, or leave out dataset.manifest")
        path = plan.resolve(spec.manifest)
    elif spec.builtin:
        path = datasets_dir() / spec.builtin / "manifest.json"
        if not path.is_file():
            # a built-in made from another package's data (digits: scikit-learn) ships no files
            # of ours, so there is nothing of govssl's to verify; the record says "no manifest"
            return None
    else:
        return None
    report = verify_manifest(path)
    if spec.builtin:
        from govssl.data._builtin import ADULT

        read = [datasets_dir() / spec.builtin / name for name, _ in ADULT.files] if spec.builtin == "adult" else []
    else:
        read = [plan.resolve(p) for p in (spec.path, spec.test_path) if p is not None]
    listed = {f["path"] for f in report.files}
    missing = [str(p.resolve()) for p in read if str(p.resolve()) not in listed]
    if missing:
        raise IntegrityError(f"{missing[0]}: not listed in the manifest {path}",
                             [f"{m}: the plan reads it but the manifest {path} does not list it" for m in missing])
    return report
