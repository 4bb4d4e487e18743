"""Governance documents of an audit run: model card, NIST AI RMF report and evidence.json.

Contexts (what each document says) are plain functions in ``_context``; rendering is sandboxed
Jinja over the shipped ``templates/`` folder, which a user folder may override file by file.
"""

from govssl.reports._context import (
    END_TO_END_DP,
    MODEL_CARDS_CITATION,
    NO_DP,
    PARTIAL_DP,
    RMF_CITATION,
    evidence,
    model_card_context,
    privacy_statement,
    rmf_report_context,
)
from govssl.reports._datasheet import DATASHEETS_CITATION, datasheet_context, load_datasheet_answers
from govssl.reports._render import DOCUMENTS, render

__all__ = [
    "DATASHEETS_CITATION",
    "DOCUMENTS",
    "datasheet_context",
    "load_datasheet_answers",
    "END_TO_END_DP",
    "MODEL_CARDS_CITATION",
    "NO_DP",
    "PARTIAL_DP",
    "RMF_CITATION",
    "evidence",
    "model_card_context",
    "privacy_statement",
    "render",
    "rmf_report_context",
]
