"""What every export format shares: the hashes it states are checked, the file appears whole or not at all."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

from govssl.errors import IntegrityError
from govssl.records import AuditRun, sha256_file

__all__ = ["check_files", "described_files", "first_url", "json_bytes", "model_artifact", "plain", "write_file"]

EXISTS = "{out}: the export file already exists; pass --force to replace it"
CHANGED = (
    "cannot export run '{run_id}': its {kind} file {path} changed on disk since the audit "
    "(sha256 {actual}, the store records {expected})"
)

_URL = re.compile(r"https?://[^\s,;()<>\"'\\]+")
_DOI = re.compile(r"\bdoi:\s*(10\.\d{4,9}/[^\s,;()<>\"'\\]+)", re.IGNORECASE)


def first_url(*texts: str) -> str:
    """The first http(s) URL in the texts, else the first DOI as a doi.org URL; "" if none."""
    for text in texts:
        if found := _URL.search(text or ""):
            return found.group(0).rstrip(".")
    for text in texts:
        if found := _DOI.search(text or ""):
            return "https://doi.org/" + found.group(1).rstrip(".")
    return ""


def described_files(run: AuditRun) -> Iterator[tuple[str, str, str]]:
    """``(kind, path, sha256)`` of every file an export names by hash: the run's artifacts
    (model, documents, attestations) and the audited data files, as the store records them."""
    for artifact in run.artifacts:
        yield artifact.kind, artifact.path, artifact.sha256
    for f in run.dataset.files:
        yield "data", str(f["path"]), str(f["sha256"])


def check_files(run: AuditRun) -> None:
    """Raise IntegrityError naming the first file an export would describe that is on this
    machine with another sha256 than the store records. A file that is not here (the run was
    made on another machine) is described by the verified store alone, as ``attest verify``
    treats the data files it does not find."""
    for kind, path, expected in described_files(run):
        file = Path(path)
        if not file.is_file():
            continue
        actual = sha256_file(file)
        if actual != expected:
            raise IntegrityError(CHANGED.format(run_id=run.run_id, kind=kind, path=file, actual=actual,
                                                expected=expected))


def model_artifact(run: AuditRun):
    """The run's model artifact (None when the audit stopped at preflight and trained nothing)."""
    return next((a for a in run.artifacts if a.kind == "model"), None)


def plain(value: Any) -> Any:
    """JSON-safe: non-finite floats as the strings "nan", "inf", "-inf", tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def json_bytes(document: dict) -> bytes:
    """Strict JSON (no NaN), indented, UTF-8, newline at the end."""
    return (json.dumps(plain(document), indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def write_file(out: Path, data: bytes, overwrite: bool) -> None:
    """Write ``out`` whole or not at all, as the zip export is written (``--force``: ``overwrite``)."""
    from govssl.store._reports import write_whole

    write_whole(out, lambda partial: partial.write_bytes(data), overwrite)
