"""Render a run's documents into its output folder: all to strings first, then written."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from govssl.errors import IntegrityError
from govssl.formats.annex_iv import annex_iv_context, framework_of
from govssl.records import Artifact, AuditRun
from govssl.reports._context import (
    CHARTS,
    evidence,
    model_card_context,
    rmf_report_context,
)
from govssl.reports._datasheet import datasheet_context
from govssl.reports._jinja import environment, render_template
from govssl.reports._mct import model_card_json_from_context
from govssl.reports._pdf import html_to_pdf, page_css

__all__ = ["render", "DOCUMENTS", "JSON_DOCUMENTS", "PDF_DOCUMENTS", "FORMATS", "ALL_FORMATS", "UNKNOWN_FORMAT"]

#: the formats an audit writes, and `govssl report` without --format
FORMATS = ("md", "html", "json")
#: every format `render` writes: PDF only when asked for (it needs WeasyPrint and Pango)
ALL_FORMATS = (*FORMATS, "pdf")
UNKNOWN_FORMAT = "unknown document format {format!r}; choose from {choices}"

#: (artifact kind, format, context, template, output file) of every templated document
DOCUMENTS = (
    ("model_card", "md", "model_card", "model_card.md.j2", "model_card.md"),
    ("rmf_report", "md", "rmf_report", "rmf_report.md.j2", "rmf_report.md"),
    ("datasheet", "md", "datasheet", "datasheet.md.j2", "datasheet.md"),
    ("annex_iv", "md", "annex_iv", "annex_iv.md.j2", "annex_iv.md"),
    ("model_card_html", "html", "model_card", "model_card.html.j2", "model_card.html"),
    ("rmf_report_html", "html", "rmf_report", "rmf_report.html.j2", "rmf_report.html"),
    ("datasheet_html", "html", "datasheet", "datasheet.html.j2", "datasheet.html"),
    ("annex_iv_html", "html", "annex_iv", "annex_iv.html.j2", "annex_iv.html"),
)
#: (artifact kind, output file) of the documents written as JSON (format "json")
JSON_DOCUMENTS = (
    ("model_card_json", "model_card.json"),
    ("evidence", "evidence.json"),
)
#: (artifact kind, context, HTML template, output file) of the documents written as PDF (format "pdf")
PDF_DOCUMENTS = (
    ("model_card_pdf", "model_card", "model_card.html.j2", "model_card.pdf"),
    ("rmf_report_pdf", "rmf_report", "rmf_report.html.j2", "rmf_report.pdf"),
    ("datasheet_pdf", "datasheet", "datasheet.html.j2", "datasheet.pdf"),
    ("annex_iv_pdf", "annex_iv", "annex_iv.html.j2", "annex_iv.pdf"),
)
CHART_NOT_RECORDED = (
    "cannot embed the chart {path} in the PDF of run '{run_id}': it is not a recorded artifact of the run"
)
CHART_CHANGED = (
    "cannot embed the chart {path} in the PDF of run '{run_id}': its sha256 is {actual}, the store records {expected}"
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, content: str | bytes) -> None:
    # A reader never sees half a document: write beside it, then rename over it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if isinstance(content, bytes):
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(content)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; documents are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _formats(formats: Iterable[str]) -> set[str]:
    if isinstance(formats, str):
        formats = (formats,)
    wanted = set()
    for name in formats:
        if name not in ALL_FORMATS:
            raise ValueError(UNKNOWN_FORMAT.format(format=name, choices=", ".join(ALL_FORMATS)))
        wanted.add(name)
    return wanted


def _json_text(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _chart_bytes(run: AuditRun, charts: list[dict]) -> dict[str, bytes]:
    """The bytes of the charts the documents link (link -> bytes), each checked against the
    sha256 the run records for it: a PDF embeds only what the store vouches for."""
    recorded = {Path(a.path): a for a in run.artifacts if a.kind == "chart"}
    names = {check: name for check, name, _ in CHARTS}
    found = {}
    for chart in charts:
        path = (Path(run.out_dir) / names[chart["check"]]).resolve()
        artifact = recorded.get(path)
        if artifact is None:
            raise IntegrityError(CHART_NOT_RECORDED.format(path=path, run_id=run.run_id))
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()  # the bytes embedded are the bytes checked
        if actual != artifact.sha256:
            raise IntegrityError(CHART_CHANGED.format(path=path, run_id=run.run_id, actual=actual,
                                                      expected=artifact.sha256))
        found[chart["file"]] = data
    return found


def render(
    run: AuditRun,
    out_dir: Path,
    template_dir: Path | None = None,
    attestations: Iterable[Mapping] | None = None,
    formats: Iterable[str] = FORMATS,
) -> list[Artifact]:
    """Write the run's documents into ``out_dir``, one artifact per file.

    ``formats``: "md" (model_card.md, rmf_report.md), "html" (model_card.html,
    rmf_report.html, datasheet.html), "json" (model_card.json in the Model Card Toolkit schema, evidence.json),
    "pdf" (model_card.pdf, rmf_report.pdf, datasheet.pdf: the HTML documents laid out for print, with
    the run's recorded charts embedded); an unknown one is a ValueError. PDF needs WeasyPrint and
    the Pango library (ConfigError naming what to install otherwise), and a chart whose file does
    not match its recorded sha256 is an IntegrityError. ``template_dir`` overrides any shipped template by file name;
    ``attestations`` are ``{subcategory, by, date, statement}`` records: NIST AI RMF subcategories
    for the RMF report, ``eu-ai-act:<item>`` for the EU AI Act Annex IV report.
    Raises TemplateError (and writes nothing) if any template fails. Does not change ``run``:
    evidence.json lists the artifacts the run had before rendering, and the caller adds the
    returned ones.
    """
    wanted = _formats(formats)
    out_dir = Path(out_dir)
    env = environment(template_dir)
    # every context always: an invalid attestation is bad input whichever formats are asked for
    attestations = list(attestations or ())
    nist = [a for a in attestations
            if not isinstance(a, Mapping) or framework_of(a.get("subcategory"))[0] == "nist-ai-rmf"]
    rmf = rmf_report_context(run, nist)
    contexts = {
        "model_card": model_card_context(run, out_dir),
        "rmf_report": rmf,
        "datasheet": datasheet_context(run),
        "annex_iv": annex_iv_context(run, attestations, rmf=rmf),
    }
    texts: dict[str, str | bytes] = {}
    files: dict[str, str] = {}
    for kind, fmt, context, template, filename in DOCUMENTS:
        if fmt in wanted:
            texts[kind] = render_template(env, template, contexts[context])
            files[kind] = filename
    if "json" in wanted:
        texts["model_card_json"] = _json_text(model_card_json_from_context(contexts["model_card"]))
        texts["evidence"] = json.dumps(evidence(run), indent=2, allow_nan=False) + "\n"
        files.update(JSON_DOCUMENTS)
    if "pdf" in wanted:
        charts = _chart_bytes(run, contexts["model_card"]["charts"])
        model_sha256 = run.training.model_sha256 if run.training.trained else None
        css = page_css(run.decision.verdict, run.run_id, model_sha256)
        for kind, context, template, filename in PDF_DOCUMENTS:
            html = render_template(env, template, contexts[context])
            texts[kind] = html_to_pdf(html, filename, out_dir, css, charts)
            files[kind] = filename

    artifacts = []
    for kind, text in texts.items():
        path = out_dir / files[kind]
        _write_atomic(path, text)
        artifacts.append(Artifact.of(kind, path))
    return artifacts
