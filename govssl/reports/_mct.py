"""The model card as JSON in the format of Google's Model Card Toolkit, schema v0.0.2.

Built from the same context as the Markdown and HTML model cards, so the three never disagree.
The schema's quirks are kept: metric values and confidence bounds are strings, and a licence
is either an SPDX-style ``identifier`` or a ``custom_text``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlparse

from govssl.records import AuditRun
from govssl.reports._context import model_card_context
from govssl.reports._format import num

__all__ = ["MCT_SCHEMA_VERSION", "model_card_json", "model_card_json_from_context"]

MCT_SCHEMA_VERSION = "0.0.2"

# One SPDX id ("Apache-2.0", "LicenseRef-x", "proprietary") or an expression of them ("MIT OR X").
_SPDX_ID = r"[A-Za-z0-9][A-Za-z0-9.+-]*"
_SPDX_LIKE = re.compile(rf"\(?{_SPDX_ID}\)?(?: (?:AND|OR|WITH) \(?{_SPDX_ID}\)?)*")


def _is_uri(text: str) -> bool:
    parsed = urlparse(text.strip())
    return " " not in text.strip() and bool(parsed.scheme) and bool(parsed.netloc or parsed.path)


def _license(text: str) -> dict:
    text = str(text).strip()
    if text and _SPDX_LIKE.fullmatch(text):
        return {"identifier": text}
    return {"custom_text": text}


def _value(value) -> str | None:
    """Full precision as text ("nan" and "inf" too); the schema wants strings."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _metric(m: Mapping, type_: str) -> dict | None:
    value = _value(m["value"])
    if value is None:
        return None
    metric = {"type": type_, "value": value, "slice": m.get("subject") or ""}
    if m.get("ci_low") is not None and m.get("ci_high") is not None:
        metric["confidence_interval"] = {
            "lower_bound": _value(m["ci_low"]),
            "upper_bound": _value(m["ci_high"]),
        }
    return metric


def _performance_metrics(context: Mapping) -> list[dict]:
    """Model-wide figures, then per attribute the fairness aggregates and per-group figures.

    ``slice`` is the measurement's subject: "" model-wide, "sex" for an attribute, "sex=Female"
    for one group. Figures of other checks are typed ``check.metric`` so that they cannot be
    mistaken for the performance check's metric of the same name.
    """
    metrics = [_metric(m, m["metric"]) for m in context["performance"]]
    for table in context["fairness"]:
        metrics += [_metric(m, m["metric"]) for m in table["aggregates"]]
        for group in table["groups"]:
            metrics += [
                _metric(group["values"][name], name)
                for name in table["metrics"]
                if name in group["values"]
            ]
    for other in context["other_measurements"]:
        metrics += [_metric(m, f"{other['check']}.{m['metric']}") for m in other["measurements"]]
    return [m for m in metrics if m is not None]


def _joined(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"


def _documentation(context: Mapping) -> str:
    card, training, decision, run = (
        context["card"], context["training"], context["decision"], context["run"]
    )
    pretraining = (
        f"self-supervised pretraining with {training['method']} on "
        f"{training['n_pretrain_rows']} unlabelled rows"
        if training["method"] and training["method"] != "none"
        else "no self-supervised pretraining"
    )
    paragraphs = [
        card.get("intended_use") or "",
        f"Architecture: {training['architecture']}, {training['n_parameters']} parameters; "
        f"{pretraining}; {training['finetune_mode']} head on {training['n_labelled_rows']} "
        f"labelled rows (label fraction {num(training['label_fraction'])}). "
        f"{context['privacy']['headline']}",
        f"Release gate verdict: {decision['verdict'].upper()} under policy "
        f"{run['policy']['name']} v{run['policy']['version']} ({decision['n_blockers']} blocking "
        f"failure(s), {decision['n_warnings']} warning(s), {decision['n_waived']} waived); "
        f"audit run {run['run_id']} on {run['created_at']}, govssl {run['govssl_version']}.",
    ]
    return "\n\n".join(p for p in paragraphs if p)


def _model_details(context: Mapping) -> dict:
    card, run, training = context["card"], context["run"], context["training"]
    owners = []
    for owner in card.get("owners") or []:
        entry = {"name": owner["name"]}
        if owner.get("contact"):
            entry["contact"] = owner["contact"]
        owners.append(entry)
    references = [str(r) for r in card.get("references") or []]
    citation = (
        f"{'; '.join(o['name'] for o in owners) or 'govssl'}. {card['name']}, version "
        f"{card['version']}: model card from govssl audit run {run['run_id']}, "
        f"{run['created_at'][:10]}."
    )
    details = {
        "name": card["name"],
        "overview": card.get("overview") or "",
        "documentation": _documentation(context),
        "owners": owners,
        "version": {"name": str(card["version"]), "date": run["created_at"][:10]},
        "references": [{"reference": r} for r in references if _is_uri(r)],
        # references that are not links (a paper, a report) are how to cite, not where to go
        "citations": [{"style": "text", "citation": citation}]
        + [{"style": "text", "citation": r} for r in references if not _is_uri(r)],
    }
    if card.get("license"):  # an unstated licence is left out (the schema does not require one)
        details["licenses"] = [_license(card["license"])]
    if training.get("model_file"):
        details["path"] = training["model_file"]
    return details


def _dataset(context: Mapping, split: str) -> dict:
    dataset, training = context["dataset"], context["training"]
    about = [
        f"Source: {dataset['source']}." if dataset.get("source") else "",
        f"License: {dataset['license']}." if dataset.get("license") else "",
        f"Creator: {dataset['creator']}." if dataset.get("creator") else "",
        (f"From the verified data manifest: {', '.join(dataset['from_manifest'])}."
         if dataset.get("from_manifest") else ""),
        f"Citation: {dataset['citation']}" if dataset.get("citation") else "",
    ]
    if split == "training":
        rows = (
            f"Training split: {dataset['n_train']} rows; {training['n_pretrain_rows']} read by "
            f"self-supervised pretraining, {training['n_labelled_rows']} labelled rows for the "
            f"head; positive label rate {num(dataset['positive_rate_train'])}."
        )
    else:
        rows = (
            f"Evaluation (test) split: {dataset['n_test']} rows; positive label rate "
            f"{num(dataset['positive_rate_test'])}. All figures in quantitative_analysis are "
            "measured on this split."
        )
    data = {
        "name": f"{dataset['name']} ({split})",
        "description": " ".join(p for p in [rows, *about] if p),
        "sensitive": {"sensitive_data": list(context["factors"]["sensitive"])},
    }
    if dataset.get("source") and _is_uri(dataset["source"]):
        data["link"] = dataset["source"]
    return data


def _model_parameters(context: Mapping) -> dict:
    dataset, training = context["dataset"], context["training"]
    numeric, categorical = dataset["numeric_features"], dataset["categorical_features"]
    return {
        "model_architecture": (
            f"{training['architecture']}, {training['n_parameters']} parameters; "
            f"pretraining: {training['method']}; head: {training['finetune_mode']}; "
            f"differential privacy: {context['privacy']['summary']}"
        ),
        "data": [_dataset(context, "training"), _dataset(context, "evaluation")],
        "input_format": (
            f"One tabular row of {dataset['n_features']} features: {len(numeric)} numeric "
            f"({_joined(numeric)}) and {len(categorical)} categorical ({_joined(categorical)})."
        ),
        "input_format_map": [{"key": name, "value": "numeric"} for name in numeric]
        + [{"key": name, "value": "categorical"} for name in categorical],
        "output_format": (
            f"The probability that {dataset['target']} is {dataset['positive_label']} "
            "(binary classification)."
        ),
    }


def _limitations(context: Mapping) -> list[str]:
    """Failed rules, the documents' caveats (plan limitations, skipped or errored checks,
    unevaluated and waived rules, partial DP), the privacy scope and out-of-scope uses."""
    privacy = context["privacy"]
    items = [
        f"Rule {o['rule_id']} failed ({o['severity']}): {o['message']}"
        for o in context["decision"]["outcomes"]
        if o["status"] == "fail"
    ]
    items += context["caveats"]
    if not privacy["private"]:
        items.append(privacy["headline"])
    elif not privacy["end_to_end"]:
        items += privacy["paragraphs"]
    items += [f"Out of scope: {use}" for use in context["card"].get("out_of_scope_uses") or []]
    return items


def _tradeoffs(context: Mapping) -> list[str]:
    privacy = context["privacy"]
    if not privacy["private"]:
        return []
    figures = "; ".join(f"{p['label']} {num(p['value'])}" for p in privacy["parameters"])
    return [
        "Differential privacy limits what the model reveals about its training rows at a cost "
        f"in accuracy; the figures above are those of the private model ({figures})."
    ]


def _considerations(context: Mapping) -> dict:
    card = context["card"]
    return {
        "users": [{"description": u} for u in card.get("intended_users") or []],
        "use_cases": [{"description": card["intended_use"]}] if card.get("intended_use") else [],
        "limitations": [{"description": text} for text in _limitations(context)],
        "tradeoffs": [{"description": text} for text in _tradeoffs(context)],
        "ethical_considerations": [
            {"name": item["name"], "mitigation_strategy": item.get("mitigation") or ""}
            for item in context["ethical_considerations"]
        ],
    }


def model_card_json_from_context(context: Mapping) -> dict:
    """The Model Card Toolkit document for a model card context (``model_card_context``)."""
    return {
        "schema_version": MCT_SCHEMA_VERSION,
        "model_details": _model_details(context),
        "model_parameters": _model_parameters(context),
        "quantitative_analysis": {"performance_metrics": _performance_metrics(context)},
        "considerations": _considerations(context),
    }


def model_card_json(run: AuditRun) -> dict:
    """``model_card.json``: the run's model card in the Model Card Toolkit schema v0.0.2."""
    return model_card_json_from_context(model_card_context(run))
