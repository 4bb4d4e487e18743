"""Governance documents of an audit run: model card, NIST AI RMF report and evidence.json.

Contexts (what each document says) are plain functions in ``_context``; Markdown and HTML are
rendered by sandboxed Jinja over the shipped ``templates/`` folder, which a user folder may
override file by file; ``model_card.json`` (Model Card Toolkit schema) comes from the same context;
PDFs are the HTML documents laid out for print by WeasyPrint (``_pdf``).
"""

from govssl.reports._context import (
    DP_COVERAGE,
    END_TO_END_DP,
    MODEL_CARDS_CITATION,
    NO_DP,
    PARTIAL_DP,
    RMF_CITATION,
    WAIVER_KEYS,
    evidence,
    model_card_context,
    privacy_statement,
    rmf_report_context,
)
from govssl.reports._pdf import load_weasyprint
from govssl.reports._mct import MCT_SCHEMA_VERSION, model_card_json
from govssl.reports._render import (
    ALL_FORMATS, DOCUMENTS, FORMATS, JSON_DOCUMENTS, PDF_DOCUMENTS, UNKNOWN_FORMAT, render,
)
from govssl.reports._datasheet import DATASHEETS_CITATION, datasheet_context, load_datasheet_answers

__all__ = [
    "ALL_FORMATS",
    "PDF_DOCUMENTS",
    "DATASHEETS_CITATION",
    "DOCUMENTS",
    "datasheet_context",
    "load_datasheet_answers",
    "load_weasyprint",
    "DP_COVERAGE",
    "END_TO_END_DP",
    "FORMATS",
    "JSON_DOCUMENTS",
    "MCT_SCHEMA_VERSION",
    "MODEL_CARDS_CITATION",
    "NO_DP",
    "PARTIAL_DP",
    "RMF_CITATION",
    "UNKNOWN_FORMAT",
    "WAIVER_KEYS",
    "evidence",
    "model_card_context",
    "model_card_json",
    "privacy_statement",
    "render",
    "rmf_report_context",
]
