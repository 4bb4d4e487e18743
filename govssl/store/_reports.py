"""Views of stored runs for people: two runs side by side, one run as a self-checking zip."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path

from govssl.errors import DataError, IntegrityError
from govssl.records import AuditRun

__all__ = ["diff_runs", "export_run", "EXPORTED_KINDS_SKIPPED"]

#: large files that the manifest lists by sha256 but the zip leaves out
EXPORTED_KINDS_SKIPPED = ("model", "predictions", "data")

FILE_MISSING = "cannot export run '{run_id}': its {kind} file {path} is not on this machine"
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
    the rule outcomes whose status or observed value changed."""
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
    oa = {(o.rule_id, o.subject): o for o in a.decision.outcomes}
    ob = {(o.rule_id, o.subject): o for o in b.decision.outcomes}
    rules = []
    for key in [*oa, *(k for k in ob if k not in oa)]:
        ra, rb = oa.get(key), ob.get(key)
        status_a, status_b = (ra.status if ra else None), (rb.status if rb else None)
        observed_a, observed_b = (ra.observed if ra else None), (rb.observed if rb else None)
        if status_a != status_b or observed_a != observed_b:
            rules.append({"rule_id": key[0], "subject": key[1], "status_a": status_a,
                          "status_b": status_b, "observed_a": observed_a, "observed_b": observed_b})
    return {
        "run_a": a.run_id, "run_b": b.run_id,
        "verdict_a": a.decision.verdict, "verdict_b": b.decision.verdict,
        "model_changed": a.training.model_sha256 != b.training.model_sha256,
        "policy_changed": a.policy_sha256 != b.policy_sha256,
        "measurements": measurements,
        "rules_changed": rules,
    }


def export_run(run: AuditRun, out: str | Path) -> list[str]:
    """Write ``out`` (a zip): the run's record (``run.json``), its documents and evidence, its
    attestations, and ``SHA256SUMS`` over all of them (``sha256sum -c`` format). Every file is
    checked against the sha256 the store recorded first; returns the names in the zip."""
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
        name = f"documents/{path.name}"
        if name in members:
            name = f"documents/{position}-{path.name}"
        members[name] = data
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in members.items())
    members["SHA256SUMS"] = sums.encode("ascii")
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                archive.writestr(f"{run.run_id}/{name}", data)
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DataError(f"{out}: cannot write the export: {exc}") from None
    return list(members)


