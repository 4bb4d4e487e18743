"""PDF versions of the HTML documents, laid out by WeasyPrint for print.

Each page carries the verdict in its top margin and, in its bottom margin, the run id, the
model's sha256 and "page N of M" (CSS ``@page`` margin boxes). Charts are embedded from bytes
the caller read and checked against the store; the renderer fetches nothing else: no network,
no other file. WeasyPrint needs the Pango text library of the system; when it or WeasyPrint is
missing, the error says what to install.
"""

from __future__ import annotations

import contextlib
import io
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urljoin

from govssl.errors import ConfigError, TemplateError

__all__ = ["PDF_MISSING", "html_to_pdf", "load_weasyprint", "page_css"]

PDF_MISSING = (
    "PDF documents need WeasyPrint and the Pango text library it draws with, but {what} "
    "({detail}). Install {install}, then run the command again"
)
SYSTEM_PACKAGES = "libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libfontconfig1 fonts-dejavu-core"
NOT_A_CHART = (
    "{document}: the template refers to {url!r}, which is not a chart of the run; a PDF embeds only the "
    "run's charts and fetches nothing else"
)


def load_weasyprint():
    """The ``weasyprint`` module; ConfigError (exit 2) naming what to install when the package
    or a system library it loads (Pango, HarfBuzz, fontconfig) is missing."""
    try:
        # on a missing library WeasyPrint prints a banner to stdout before raising: ours says it
        with contextlib.redirect_stdout(io.StringIO()):
            import weasyprint
    except ImportError as exc:
        raise ConfigError(PDF_MISSING.format(
            what="the Python package weasyprint is not installed", detail=exc,
            install="it with `pip install weasyprint` (a dependency of govssl; constraints.txt pins the tested version)",
        )) from None
    except OSError as exc:  # cffi could not load a shared library: the message names it
        raise ConfigError(PDF_MISSING.format(
            what="a system library could not be loaded", detail=" ".join(str(exc).split()),
            install=f"the system packages (Debian/Ubuntu: apt-get install {SYSTEM_PACKAGES})",
        )) from None
    return weasyprint


def _css_string(text: str) -> str:
    """``text`` as a quoted CSS string: every character but letters, digits, space and a few
    marks as a hex escape, so no value can end the string or the rule."""
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:-_()")
    return '"' + "".join(c if c in safe else f"\\{ord(c):06x}" for c in text) + '"'


def page_css(verdict: str, run_id: str, model_sha256: str | None) -> str:
    """The print stylesheet laid over a document (a user stylesheet, hence ``!important`` where
    it overrides the document's own rules): A4 pages, the document's title and the verdict
    at the top of every page, the run id, the model's sha256 and the page number at the bottom."""
    verdict_text = f"Verdict: {verdict.upper()}"
    model = f"model sha256 {model_sha256}" if model_sha256 else "no model (the audit ended at preflight)"
    colour = "#0f5323" if verdict == "pass" else "#82071e"
    return f"""
@page {{
  size: A4;
  margin: 20mm 15mm 22mm 15mm;
  @top-left {{ content: string(doc-title); font: 8pt sans-serif; color: #59636e; }}
  @top-right {{ content: {_css_string(verdict_text)}; font: bold 9pt sans-serif; color: {colour}; }}
  @bottom-left {{
    content: {_css_string("run " + run_id)} "\\a" {_css_string(model)};
    white-space: pre; font: 7pt monospace; color: #59636e; width: 80%;
  }}
  @bottom-right {{ content: "page " counter(page) " of " counter(pages); font: 8pt sans-serif; color: #59636e; }}
}}
html {{ font-size: 10pt !important; }}
body {{ font: 10pt/1.45 "DejaVu Sans", sans-serif !important; }}
main {{ max-width: none !important; padding: 0 !important; }}
h1 {{ string-set: doc-title content(); font-size: 17pt !important; margin-top: 0 !important; }}
h2 {{ font-size: 13pt !important; margin-top: 1.4rem !important; }}
h1, h2, h3, h4 {{ break-after: avoid; }}
table {{ width: 100% !important; font-size: 7.5pt !important; }}
th, td {{ padding: .2rem .35rem !important; }}
td code, th code {{ overflow-wrap: anywhere !important; }}
td.num, th.num, .ci {{ white-space: normal !important; }}
.table-wrap {{ overflow: visible !important; }}
tr, figure, .verdict, .waiver {{ break-inside: avoid; }}
figure img {{ width: 100% !important; }}
a {{ color: inherit !important; text-decoration: none !important; }}
"""


def html_to_pdf(
    html: str, document: str, base_dir: Path, css: str, resources: Mapping[str, bytes],
) -> bytes:
    """One HTML document as PDF bytes. ``resources`` maps the links the document uses (relative
    to ``base_dir``, as written in the HTML) to the bytes to embed; any other fetch stops the
    rendering with a TemplateError naming ``document``."""
    weasyprint = load_weasyprint()
    from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

    base_url = Path(base_dir).resolve().as_uri() + "/"
    allowed = {urljoin(base_url, link): data for link, data in resources.items()}
    refused: list[str] = []

    class _RunFiles(URLFetcher):
        """Serves the run's checked charts from memory; refuses every other URL."""

        def fetch(self, url, headers=None):
            if url in allowed:
                kind = mimetypes.guess_type(url)[0] or "application/octet-stream"
                return URLFetcherResponse(url, body=allowed[url], headers={"Content-Type": kind})
            refused.append(url)
            raise ValueError(f"not a chart of the run: {url}")

    try:
        return weasyprint.HTML(
            string=html, base_url=base_url, url_fetcher=_RunFiles(fail_on_errors=True),
        ).write_pdf(stylesheets=[weasyprint.CSS(string=css)])
    except FatalURLFetchingError:
        raise TemplateError(NOT_A_CHART.format(document=document, url=refused[-1] if refused else "?")) from None
