"""Views of stored runs for people: two runs side by side, one run as a self-checking zip."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path, PurePosixPath

from govssl.errors import DataError, IntegrityError
from govssl.records import AuditRun

__all__ = ["diff_runs", "export_run", "EXPORTED_KINDS_SKIPPED"]

#: large files that run.json lists by sha256 but the zip leaves out: the model and the input data
EXPORTED_KINDS_SKIPPED = ("model", "data")

FILE_MISSING = "cannot export run '{run_id}': its {kind} file {path} is not on this machine"
UNSAFE_NAME = (
    "cannot export run {run_id!r}: the zip entry {entry!r} would leave the run's folder; "
    "the store holds a name govssl does not make"
)
EXISTS = "{out}: the export file already exists; pass --force to replace it"
FILE_CHANGED = (
    "cannot export run '{run_id}': its {kind} file {path} changed on disk "
    "(sha256 {actual}, the store records {expected})"
)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def diff_runs(a: AuditRun, b: AuditRun) -> dict:
    """Measurements of both runs side by side (``delta`` = b - a where both are numbers) and
    the rule outcomes, one per rule id: ``rules_changed`` those whose status changed (or that
    only one run has), ``rules_moved`` those with the same status whose observed value or worst
    subject moved."""
    def by_key(run):
        return {(m.check, m.metric, m.subject): m for m in run.measurements}

    ma, mb = by_key(a), by_key(b)
    measurements = []
    for key in [*ma, *(k for k in mb if k not in ma)]:
        va = ma[key].value if key in ma else None
        vb = mb[key].value if key in mb else None
        na, nb = _number(va), _number(vb)
        measurements.append({
            "check": key[0], "metric": key[1], "subject": key[2],
            "a": va, "b": vb,
            "delta": nb - na if na is not None and nb is not None else None,
            "only_in": "a" if key not in mb else "b" if key not in ma else "",
        })
    oa = {o.rule_id: o for o in a.decision.outcomes}
    ob = {o.rule_id: o for o in b.decision.outcomes}
    rules, moved = [], []
    for rule_id in [*oa, *(k for k in ob if k not in oa)]:
        ra, rb = oa.get(rule_id), ob.get(rule_id)
        row = {
            "rule_id": rule_id,
            "status_a": ra.status if ra else None, "status_b": rb.status if rb else None,
            "subject_a": ra.subject if ra else None, "subject_b": rb.subject if rb else None,
            "observed_a": ra.observed if ra else None, "observed_b": rb.observed if rb else None,
        }
        if row["status_a"] != row["status_b"]:
            rules.append(row)
        elif row["observed_a"] != row["observed_b"] or row["subject_a"] != row["subject_b"]:
            moved.append(row)
    return {
        "run_a": a.run_id, "run_b": b.run_id,
        "verdict_a": a.decision.verdict, "verdict_b": b.decision.verdict,
        "model_changed": a.training.model_sha256 != b.training.model_sha256,
        "policy_changed": a.policy_sha256 != b.policy_sha256,
        "measurements": measurements,
        "rules_changed": rules,
        "rules_moved": moved,
    }


def _member(run_id: str, name: str) -> str:
    """The zip entry ``<run_id>/<name>``; IntegrityError unless it stays inside its folder
    (relative, no '..', no backslash or drive, no empty part)."""
    entry = f"{run_id}/{name}"
    parts = PurePosixPath(entry).parts
    unsafe = (
        entry.startswith("/") or "\\" in entry or "\0" in entry
        or any(part in ("", ".", "..") for part in entry.split("/"))
        or parts[0] != run_id or len(parts) < 2
    )
    if unsafe:
        raise IntegrityError(UNSAFE_NAME.format(run_id=run_id, entry=entry))
    return entry


def export_run(run: AuditRun, out: str | Path, overwrite: bool = False) -> list[str]:
    """Write ``out`` (a zip): the run's record (``run.json``), every artifact file of the run but
    the model and the input data (documents and evidence, re-rendered ones included, charts,
    predictions) under ``documents/`` by their path in the run's folder, its attestations, and
    ``SHA256SUMS`` over all of them (``sha256sum -c`` format). Every file is checked against the
    sha256 the store recorded first; returns the names in the zip.

    Every entry lies in the folder ``<run_id>/`` (IntegrityError otherwise). An existing
    ``out`` is replaced only with ``overwrite`` (DataError naming it otherwise)."""
    members: dict[str, bytes] = {}
    members["run.json"] = json.dumps(run.to_dict(), indent=2, default=str).encode("utf-8")
    if run.attestations:
        attestations = [asdict(a) for a in run.attestations]
        members["attestations.json"] = json.dumps(attestations, indent=2).encode("utf-8")
    for position, artifact in enumerate(run.artifacts):
        if artifact.kind in EXPORTED_KINDS_SKIPPED:
            continue
        path = Path(artifact.path)
        where = dict(run_id=run.run_id, kind=artifact.kind, path=path)
        if not path.is_file():
            raise DataError(FILE_MISSING.format(**where))
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != artifact.sha256:
            raise IntegrityError(FILE_CHANGED.format(**where, actual=actual, expected=artifact.sha256))
        inside = path.is_relative_to(run.out_dir) and path != Path(run.out_dir)
        name = f"documents/{path.relative_to(run.out_dir).as_posix() if inside else path.name}"
        if name in members:
            name = f"documents/{position}-{path.name}"
        members[name] = data
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in members.items())
    members["SHA256SUMS"] = sums.encode("ascii")
    entries = {_member(run.run_id, name): data for name, data in members.items()}

    def fill(partial: Path) -> None:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for entry, data in entries.items():
                archive.writestr(entry, data)

    write_whole(out, fill, overwrite)
    return list(members)


def write_whole(out: str | Path, fill, overwrite: bool) -> None:
    """Write the export file ``out`` whole or not at all: ``fill(partial)`` writes a ``.partial``
    file beside it, then a rename (``overwrite``) or a hard link that fails if ``out`` appeared
    meanwhile, so an existing file is never replaced without ``overwrite``. DataError naming
    ``out`` otherwise; the partial file never stays behind."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(EXISTS.format(out=out))
    partial = out.with_name(out.name + ".partial")
    try:
        fill(partial)
        if overwrite:
            os.replace(partial, out)
        else:
            os.link(partial, out)  # fails if out appeared meanwhile: never replaces it
            partial.unlink()
    except FileExistsError:
        partial.unlink(missing_ok=True)
        raise DataError(EXISTS.format(out=out)) from None
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DataError(f"{out}: cannot write the export: {exc}") from None


