"""Render a run's documents into its output folder: all to strings first, then written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from govssl.records import Artifact, AuditRun
from govssl.reports._context import evidence, model_card_context, rmf_report_context
from govssl.reports._datasheet import datasheet_context
from govssl.reports._jinja import environment, render_template

__all__ = ["render", "DOCUMENTS"]

#: (artifact kind, template, output file) of every templated document
DOCUMENTS = (
    ("model_card", "model_card.md.j2", "model_card.md"),
    ("rmf_report", "rmf_report.md.j2", "rmf_report.md"),
    ("datasheet", "datasheet.md.j2", "datasheet.md"),
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, text: str) -> None:
    # A reader never sees half a document: write beside it, then rename over it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; documents are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render(
    run: AuditRun,
    out_dir: Path,
    template_dir: Path | None = None,
    attestations: Iterable[Mapping] | None = None,
) -> list[Artifact]:
    """Write ``model_card.md``, ``rmf_report.md``, ``datasheet.md`` and ``evidence.json`` into ``out_dir``.

    ``template_dir`` overrides any shipped template by file name; ``attestations`` are
    ``{subcategory, by, date, statement}`` records for the RMF report. Raises TemplateError (and
    writes nothing) if any template fails. Does not change ``run``: evidence.json lists the
    artifacts the run had before rendering, and the caller adds the returned ones.
    """
    out_dir = Path(out_dir)
    env = environment(template_dir)
    contexts = {
        "model_card": model_card_context(run),
        "rmf_report": rmf_report_context(run, attestations),
        "datasheet": datasheet_context(run),
    }
    texts = {
        kind: render_template(env, template, contexts[kind]) for kind, template, _ in DOCUMENTS
    }
    texts["evidence"] = json.dumps(evidence(run), indent=2, allow_nan=False) + "\n"
    files = {kind: filename for kind, _, filename in DOCUMENTS} | {"evidence": "evidence.json"}

    artifacts = []
    for kind, text in texts.items():
        path = out_dir / files[kind]
        _write_atomic(path, text)
        artifacts.append(Artifact.of(kind, path))
    return artifacts
