"""A stored audit run as a CycloneDX 1.6 BOM in JSON (an "ML-BOM").

Source: the CycloneDX 1.6 JSON schema (``bom-1.6.schema.json`` of the CycloneDX specification,
definitions ``component``, ``modelCard``, ``componentData``, ``performanceMetric``,
``fairnessAssessment``, ``hash``, ``externalReference``) and the specification's ML-BOM example
"Model-Card-With-Dataset". cyclonedx-python-lib has no model of ``modelCard`` yet (its issue
#912), so the document is built here as plain JSON; the tests validate it with the library's
``JsonStrictValidator`` for schema version 1.6.

What the BOM holds:

- the model, a ``machine-learning-model`` component with its sha256 (the hash ``govssl gate``
  computes from the model file) and a ``modelCard``: ``modelParameters`` (approach
  ``self-supervised`` when the encoder was pretrained without labels, else ``supervised``; the
  task; the architecture; the datasets by reference), ``quantitativeAnalysis.performanceMetrics``
  (every figure of every check but preflight, model-wide and per group, with its ``slice`` and
  ``confidenceInterval``) and ``considerations`` (users, use cases, limitations, trade-offs,
  ethical considerations and one ``fairnessAssessment`` per audited attribute);
- each audited data file, a ``data`` component with its sha256 (the digest ``govssl attest
  verify`` checks for ``data/<file>``);
- the policy and the plan, ``data`` components of type ``configuration`` with the sha256 of
  their files (the policy's is the one ``govssl gate`` compares);
- the run's documents and signed statements as external references of the model, with hashes.

Figures are named as in ``model_card.json``: the performance and fairness checks' metrics by
their name, other checks' as ``check.metric``; ``slice`` is the measurement's subject ("" for
model-wide, ``sex`` for a gap across an attribute, ``sex=Female`` for one group).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePath
from urllib.parse import quote

from govssl import __version__
from govssl.formats._common import (
    check_files,
    first_url,
    json_bytes,
    model_artifact,
    write_file,
)
from govssl.records import AuditRun

__all__ = ["SPEC_VERSION", "bom", "export"]

SPEC_VERSION = "1.6"
SCHEMA_URL = "http://cyclonedx.org/schema/bom-1.6.schema.json"
SKIPPED_CHECKS = ("preflight",)  # data checks before training: evidence.json keeps their figures
MODEL_REF = "model"
POLICY_REF = "policy"
PLAN_REF = "plan"
# the documents and statements of a run, by artifact kind -> externalReference type
REFERENCES = {
    "model_card": "model-card", "model_card_html": "model-card", "model_card_json": "model-card",
    "evidence": "evidence",
    "attestation": "attestation",
    "rmf_report": "risk-assessment", "rmf_report_html": "risk-assessment",
    "datasheet": "documentation", "datasheet_html": "documentation",
}
_SPDX_ID = r"[A-Za-z0-9][A-Za-z0-9.+-]*"
_SPDX_LIKE = re.compile(rf"\(?{_SPDX_ID}\)?(?: (?:AND|OR|WITH) \(?{_SPDX_ID}\)?)*")
_UNDECLARED = {"", "not declared", "unknown", "none"}
_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[A-Za-z]{2,}")


def _text(value) -> str:
    """A figure as the schema wants it (a string), at full precision; "nan" and "inf" too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _declared(value) -> str:
    text = "" if value is None else str(value).strip()
    return "" if text.lower() in _UNDECLARED else text


def _licenses(text: str) -> list[dict]:
    """An SPDX-like identifier or expression as ``expression``, other text as a named licence;
    nothing for an undeclared licence."""
    text = _declared(text)
    if not text:
        return []
    if _SPDX_LIKE.fullmatch(text):
        return [{"expression": text}]
    return [{"license": {"name": text}}]


def _sha256(digest: str) -> list[dict]:
    return [{"alg": "SHA-256", "content": digest}]


def _properties(pairs: Iterable[tuple[str, object]]) -> list[dict]:
    return [{"name": name, "value": _text(value)} for name, value in pairs if value not in (None, "")]


def _metric(m, type_: str) -> dict:
    metric = {"type": type_, "value": _text(m.value), "slice": m.subject}
    if m.ci_low is not None and m.ci_high is not None:
        metric["confidenceInterval"] = {"lowerBound": _text(m.ci_low), "upperBound": _text(m.ci_high)}
    return metric


def performance_metrics(run: AuditRun) -> list[dict]:
    """Every measurement of every measured check but preflight, model-wide and per group."""
    metrics = []
    for result in run.results:
        if result.status != "measured" or result.check in SKIPPED_CHECKS:
            continue
        for m in result.measurements:
            if m.value is None:
                continue
            bare = result.check in ("performance", "fairness")
            metrics.append(_metric(m, m.metric if bare else f"{result.check}.{m.metric}"))
    return metrics


def _figure(m: Mapping) -> str:
    value = m["value"]
    text = f"{value:.4g}" if isinstance(value, float) and not isinstance(value, bool) else str(value)
    if m.get("ci_low") is not None and m.get("ci_high") is not None:
        text += f" (CI {m['ci_low']:.4g} to {m['ci_high']:.4g})"
    return text


def _worst_group(table: Mapping, metric: str) -> tuple[dict, dict] | None:
    """The group with the lowest finite ``metric`` and the one with the highest, among the
    groups not excluded for their size."""
    excluded = {e["subject"] for e in table.get("excluded") or []}
    rows = [
        (g, g["values"][metric]) for g in table["groups"]
        if g["subject"] not in excluded and metric in g["values"]
        and isinstance(g["values"][metric]["value"], (int, float))
        and math.isfinite(g["values"][metric]["value"])
    ]
    if len(rows) < 2:
        return None
    rows.sort(key=lambda row: row[1]["value"])
    return rows[0], rows[-1]


def fairness_assessments(run: AuditRun, tables: list[dict]) -> list[dict]:
    """One assessment per audited attribute (and intersection): the group with the lowest true
    positive rate (else selection rate) is the group at risk; the harms are the measured gaps;
    the mitigation is what the policy's fairness rules decided."""
    rules = [o for o in run.decision.outcomes if o.check == "fairness" and o.status != "skipped"]
    gating = "; ".join(
        f"rule {o.rule_id} ({o.metric} {o.threshold}, {o.severity}): {o.status}"
        + (f", worst at {o.subject}" if o.subject else "")
        for o in rules
    )
    mitigation = (f"Release gated by policy {run.policy_name} v{run.policy_version}: {gating}."
                  if gating else f"No rule of policy {run.policy_name} v{run.policy_version} gates fairness.")
    assessments = []
    for table in tables:
        attribute = table["attribute"]
        gaps = [f"{m['metric']} {_figure(m)}" for m in table["aggregates"]
                if m["metric"] != "groups_insufficient_data" and m["value"] is not None]
        metric, found = next(((name, pair) for name in ("true_positive_rate", "selection_rate")
                              if (pair := _worst_group(table, name)) is not None), ("", None))
        if found is not None:
            (low, low_m), (high, high_m) = found
            at_risk = f"{attribute}: {low['group']} (the lowest {metric.replace('_', ' ')} of the groups audited)"
            gaps.append(f"{metric} {low['group']} {_figure(low_m)} (n = {low_m.get('n')}) against "
                        f"{high['group']} {_figure(high_m)} (n = {high_m.get('n')})")
        else:
            at_risk = f"{attribute}: groups too small to compare"
        excluded = [f"{e['group']} ({e['size']} rows)" for e in table.get("excluded") or []]
        if excluded:
            gaps.append(f"left out of the gaps for fewer than {table.get('min_group_size')} test rows: "
                        + ", ".join(excluded))
        assessments.append({
            "groupAtRisk": at_risk,
            "harms": f"Measured on the test split across the groups of {attribute}: " + "; ".join(gaps) + ".",
            "mitigationStrategy": mitigation,
        })
    return assessments


def _considerations(run: AuditRun, context: Mapping) -> dict:
    from govssl.reports._mct import model_card_json_from_context

    mct = model_card_json_from_context(context)["considerations"]
    considerations = {
        "users": [u["description"] for u in mct["users"]],
        "useCases": [u["description"] for u in mct["use_cases"]],
        "technicalLimitations": [u["description"] for u in mct["limitations"]],
        "performanceTradeoffs": [u["description"] for u in mct["tradeoffs"]],
        "ethicalConsiderations": [
            {"name": e["name"], **({"mitigationStrategy": e["mitigation_strategy"]} if e["mitigation_strategy"] else {})}
            for e in mct["ethical_considerations"]
        ],
        "fairnessAssessments": fairness_assessments(run, context["fairness"]),
    }
    return {key: value for key, value in considerations.items() if value}


def _approach(run: AuditRun) -> str:
    t = run.training
    pretrained = bool(t.method) and t.method != "none" and t.pretrain_epochs > 0
    return "self-supervised" if pretrained else "supervised"


def _family(architecture: str) -> str:
    head = architecture.split(" ", 1)[0].upper()
    return {"MLP": "multilayer perceptron", "CNN": "convolutional neural network"}.get(head, head.lower())


def _data_ref(index: int, name: str) -> str:
    return f"data-{index}-{name}"


def _data_components(run: AuditRun, context: Mapping) -> list[dict]:
    ds, dataset = run.dataset, context["dataset"]
    plan_ds = (run.plan or {}).get("dataset") or {}
    sensitive = list(ds.sensitive) + [c for c in plan_ds.get("personal_data") or [] if c not in ds.sensitive]
    source = _declared(dataset.get("source"))
    components = []
    for i, f in enumerate(ds.files):
        name = PurePath(str(f["path"])).name
        data = {
            "type": "dataset",
            "name": name,
            "description": (f"File {name} of dataset {ds.name} as audited ({f.get('size')} bytes); "
                            f"{ds.n_train} training and {ds.n_test} test rows in all; target "
                            f"{ds.target!r}" + (f"; source: {source}" if source else "") + "."),
        }
        if url := first_url(source, ds.citation):
            data["contents"] = {"url": url}
        if sensitive:
            data["sensitiveData"] = sensitive
        component = {
            "type": "data",
            "bom-ref": _data_ref(i, name),
            "name": name,
            "hashes": _sha256(str(f["sha256"])),
            "description": f"Data file {name} of {ds.name}, audited in run {run.run_id}.",
            "data": [data],
        }
        if licenses := _licenses(dataset.get("license")):
            component["licenses"] = licenses
        if creator := _declared(dataset.get("creator")):
            component["authors"] = [{"name": creator}]
        components.append(component)
    return components


def _configuration(ref: str, kind: str, name: str, version: str, path: str, sha256: str, description: str,
                   properties: list[dict]) -> dict:
    data = {"type": "configuration", "name": PurePath(path).name or name, "description": description}
    if properties:
        data["contents"] = {"properties": properties}
    component = {"type": "data", "bom-ref": ref, "name": name, "description": description, "data": [data],
                 "properties": _properties([("govssl:kind", kind)])}
    if version:
        component["version"] = version
    if sha256:
        component["hashes"] = _sha256(sha256)
    return component


def _references(run: AuditRun) -> list[dict]:
    references = []
    out_dir = Path(run.out_dir)
    for artifact in run.artifacts:
        kind = REFERENCES.get(artifact.kind)
        if kind is None:
            continue
        path = Path(artifact.path)
        name = path.relative_to(out_dir).as_posix() if path.is_relative_to(out_dir) else path.name
        references.append({"type": kind, "url": quote(name), "hashes": _sha256(artifact.sha256),
                           "comment": f"{artifact.kind} of audit run {run.run_id}, in the run's folder"})
    return references


def bom(run: AuditRun) -> dict:
    """The CycloneDX 1.6 BOM of a run (a dict ready for JSON)."""
    from govssl.reports import model_card_context

    context = model_card_context(run)
    card, training, ds = context["card"], run.training, run.dataset
    data = _data_components(run, context)
    decision = run.decision
    model = {
        "type": "machine-learning-model",
        "bom-ref": MODEL_REF,
        "name": card["name"],
        "version": str(card["version"]),
        "description": card.get("overview") or (run.plan or {}).get("description") or
        f"Model audited by govssl in run {run.run_id}.",
    }
    artifact = model_artifact(run)
    if artifact is not None:
        model["hashes"] = _sha256(artifact.sha256)
    if licenses := _licenses(card.get("license") or ""):
        model["licenses"] = licenses
    owners = [{"name": o["name"], **({"email": o["contact"]} if _EMAIL.fullmatch(str(o.get("contact") or "")) else {})}
              for o in card.get("owners") or [] if o.get("name")]
    if owners:
        model["authors"] = owners
    if references := _references(run):
        model["externalReferences"] = references
    task = "classification" if len(ds.classes) <= 2 else "multiclass classification"
    inputs = (f"one tabular row of {len(ds.numeric_features)} numeric and {len(ds.categorical_features)} "
              f"categorical features" if ds.task.startswith("tabular") else "one image")
    model["modelCard"] = {
        "bom-ref": "model-card",
        "modelParameters": {
            "approach": {"type": _approach(run)},
            "task": f"{ds.task} ({task} of {ds.target!r})",
            "architectureFamily": _family(training.architecture),
            "modelArchitecture": (f"{training.architecture}, {training.n_parameters} parameters; pretraining "
                                  f"{training.method}, head {training.finetune_mode}"),
            "datasets": [{"ref": c["bom-ref"]} for c in data],
            "inputs": [{"format": inputs}],
            "outputs": [{"format": "a probability per class: " + ", ".join(map(str, ds.classes))}],
        },
        "quantitativeAnalysis": {"performanceMetrics": performance_metrics(run)},
        "considerations": _considerations(run, context),
        "properties": _properties([
            ("govssl:run_id", run.run_id),
            ("govssl:decision", decision.verdict),
            ("govssl:blocking_rules", ", ".join(o.rule_id for o in decision.blockers)),
            ("govssl:policy", f"{run.policy_name} v{run.policy_version}"),
            ("govssl:policy_sha256", run.policy_sha256),
            ("govssl:privacy", context["privacy"]["summary"]),
            ("govssl:epsilon", (training.dp or {}).get("epsilon")),
            ("govssl:delta", (training.dp or {}).get("delta")),
        ]),
    }
    rules = [{"name": f"govssl:rule:{o.rule_id}", "value": f"{o.check}.{o.metric} {o.threshold} ({o.severity})"}
             for o in decision.outcomes]
    policy = _configuration(POLICY_REF, "policy", run.policy_name, str(run.policy_version), run.policy_path,
                            run.policy_sha256, f"The govssl policy pack that decided run {run.run_id}: "
                            f"{decision.verdict}.", rules)
    plan = _configuration(PLAN_REF, "plan", run.plan_name, "", run.plan_path, run.plan_sha256,
                          f"The audit plan of run {run.run_id}: data, training and checks.", [])
    return {
        "$schema": SCHEMA_URL,
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": uuid.uuid4().urn,
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tools": {"components": [{"type": "application", "name": "govssl", "version": __version__}]},
            "properties": _properties([
                ("govssl:run_id", run.run_id),
                ("govssl:run_created_at", run.created_at),
                ("govssl:audited_with", f"govssl {run.govssl_version}"),
            ]),
        },
        "components": [model, *data, policy, plan],
        "dependencies": [
            {"ref": MODEL_REF, "dependsOn": [c["bom-ref"] for c in data] + [PLAN_REF]},
            *({"ref": c["bom-ref"]} for c in data),
            {"ref": POLICY_REF},
            {"ref": PLAN_REF},
        ],
    }


def export(run: AuditRun, out: Path, overwrite: bool) -> str:
    """Write the run's BOM to ``out`` (see the module docstring)."""
    check_files(run)
    document = bom(run)
    write_file(out, json_bytes(document), overwrite)
    n_metrics = len(document["components"][0]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"])
    return (f"exported run {run.run_id} to {out}: CycloneDX {SPEC_VERSION} BOM, the model with "
            f"{n_metrics} figure(s) and {len(document['components']) - 1} data and configuration component(s)")
