"""What goes into each document, as plain data (dicts, lists, strings, numbers).

The same contexts feed the Markdown and HTML templates and the Model Card Toolkit JSON, so nothing
here knows about Jinja. User-supplied text (plan statements, dataset and column names, reasons)
travels as data and is never compiled as template code.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

import yaml

from govssl.evidence import CheckResult, Measurement
from govssl.errors import ConfigError
from govssl.plan import ModelCardSpec
from govssl.records import AuditRun, TrainRecord
from govssl.reports._format import Md, num
from govssl.reports._meaning import BOUND_WORDS, metric_meaning
from govssl.rmf import CHECK_RMF, FUNCTIONS, UNKNOWN_SUBCATEGORY, is_subcategory, load_catalog

__all__ = [
    "MODEL_CARDS_CITATION",
    "RMF_CITATION",
    "NO_DP",
    "END_TO_END_DP",
    "DP_COVERAGE",
    "PARTIAL_DP",
    "WAIVER_KEYS",
    "model_card_context",
    "rmf_report_context",
    "evidence",
    "front_matter",
    "privacy_statement",
    "fairness_tables",
    "caveats",
    "data_origin",
    "policy_rationales",
    "verdict_reasons",
    "RMF_STATUSES",
    "CHARTS",
]

MODEL_CARDS_CITATION = (
    "Margaret Mitchell, Simone Wu, Andrew Zaldivar, Parker Barnes, Lucy Vasserman, Ben Hutchinson, "
    "Elena Spitzer, Inioluwa Deborah Raji and Timnit Gebru. Model Cards for Model Reporting. "
    "Proceedings of the Conference on Fairness, Accountability, and Transparency (FAT* '19), "
    "2019, pp. 220-229. doi:10.1145/3287560.3287596"
)
RMF_CITATION = (
    "NIST AI 100-1, Artificial Intelligence Risk Management Framework (AI RMF 1.0), "
    "National Institute of Standards and Technology, January 2023. doi:10.6028/NIST.AI.100-1"
)

NO_DP = (
    "This model was not trained with differential privacy: no formal privacy guarantee is made "
    "for its training data."
)
END_TO_END_DP = (
    "Every training phase that read the private training rows ran under DP-SGD, so the "
    "(ε, δ) guarantee below holds end-to-end for each training row."
)
DP_COVERAGE = (
    "The guarantee is for the released model's weights. It does not cover what the audit itself "
    "computed from the training rows for its reviewers: the supervised-only baseline (trained "
    "under its own DP-SGD run, so publishing it too would add its ε), the poisoning check's "
    "retrained copies, the membership-inference evaluation, and the counts and statistics of the "
    "training rows in the datasheet and the data-quality results. Preprocessing fitted on the "
    "training rows (for tables, the standardisation of numeric features) ran without DP."
)


def _levels_paragraph(training: TrainRecord) -> list[str]:
    """Where the category levels written into the model file came from, and whether that is
    inside the guarantee (declared, or chosen by the private selection composed into epsilon)."""
    levels = training.category_levels or {}
    if not levels.get("columns"):
        return []
    inside = "inside" if levels.get("private") else "outside"
    return [f"Category levels ({inside} the guarantee): {levels.get('note', '')}."]
PARTIAL_DP = (
    "Differential privacy covers only part of training: {scope}. No differential-privacy "
    "guarantee holds for the training data as a whole."
)

_DP_SCOPES = {
    "head": (
        "the classification head was trained under DP-SGD; the encoder was not",
        "classification head",
    ),
    "finetune": (
        "the supervised fine-tuning phase (encoder and head) was trained under DP-SGD; "
        "the self-supervised pretraining was not",
        "fine-tuning phase",
    ),
    "pretrain+finetune": (
        "the self-supervised pretraining and the fine-tuning were trained under DP-SGD, composed "
        "in one accountant",
        "pretraining and fine-tuning phases",
    ),
    "pretrain+head": (
        "the self-supervised pretraining and the classification head were trained under DP-SGD, "
        "composed in one accountant",
        "pretraining and head phases",
    ),
}
_DP_PARAMETERS = (
    ("epsilon", "epsilon (ε)"),
    ("delta", "delta (δ)"),
    ("accountant", "accountant"),
    ("noise_multiplier", "noise multiplier"),
    ("sample_rate", "sample rate"),
    ("steps", "steps"),
    ("max_grad_norm", "max grad norm (per-sample clipping)"),
)

FAIRNESS_GROUP_METRICS = (
    "count",
    "selection_rate",
    "true_positive_rate",
    "false_positive_rate",
    "accuracy",
)
_MAX_EVIDENCE_MEASUREMENTS = 12
#: fields of a waiver record (govssl.records.Waiver) that every document shows, in this order
WAIVER_KEYS = ("approver", "reason", "expires", "waiver_id", "created_at")


# ---------------------------------------------------------------- shared pieces


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _result(run: AuditRun, check: str) -> CheckResult | None:
    return next((r for r in run.results if r.check == check), None)


def _card(run: AuditRun) -> dict:
    """The plan's model_card section with the schema's defaults for anything left out."""
    card = ModelCardSpec().model_dump(mode="json")
    card.update((run.plan or {}).get("model_card") or {})
    card["name"] = card.get("name") or run.plan_name
    return card


_UNDECLARED = {"", "not declared", "unknown", "none"}


def _declared(value: Any) -> str:
    """``value`` as text, or "" when it is blank or a placeholder such as "not declared"."""
    text = "" if value is None else str(value).strip()
    return "" if text.lower() in _UNDECLARED else text


def data_origin(run: AuditRun) -> dict:
    """Source, licence, creator and collection notes of the audited data.

    The plan's (or the built-in dataset's) statement wins; what it leaves out comes from the data
    manifest the audit verified before training (recorded with the dataset summary whatever checks
    the plan runs; runs stored before that record it only in the provenance check's
    ``manifest_verified`` measurement), and ``from_manifest`` names the fields that did. Unknown
    fields are "" (documents say "not declared").
    """
    verified = next(
        (m for r in run.results if r.check == "provenance" and r.status == "measured"
         for m in r.measurements if m.metric == "manifest_verified" and m.value is True),
        None,
    )
    manifest = (getattr(run.dataset, "manifest", None)
                or (verified.details.get("manifest") if verified is not None else None) or {})
    ds = run.dataset
    stated = {"source": ds.source, "license": ds.license, "creator": "", "collection_notes": ""}
    origin: dict[str, Any] = {"from_manifest": [], "manifest": PurePath(manifest["path"]).name
                              if manifest.get("path") else ""}
    for key, value in stated.items():
        mine, theirs = _declared(value), _declared(manifest.get(key))
        origin[key] = mine or theirs
        if not mine and theirs:
            origin["from_manifest"].append(key)
    return origin


def _run_summary(run: AuditRun) -> dict:
    return {
        "run_id": run.run_id,
        "created_at": run.created_at,
        "govssl_version": run.govssl_version,
        "plan": {"name": run.plan_name, "sha256": run.plan_sha256},
        "policy": {
            "name": run.policy_name,
            "version": run.policy_version,
            "sha256": run.policy_sha256,
        },
        "verdict": run.decision.verdict,
        "seconds": run.seconds,
    }


def _training(training: TrainRecord) -> dict:
    data = asdict(training)
    data.pop("history", None)
    data["model_file"] = PurePath(training.model_path).name if training.model_path else ""
    return data


def calibration_summary(training: TrainRecord) -> dict | None:
    """How the released probabilities were calibrated, for the documents; None when the record
    has no calibration entry (a run stored before calibration existed, or nothing trained)."""
    cal = dict(training.calibration or {})
    if not cal:
        return None
    if cal.get("method") != "temperature":
        return {"method": "none", "text": "none: the released probabilities are the classifier's own"}
    if cal.get("private"):
        how = (f"fitted by DP-SGD, its privacy cost composed into the reported (ε, δ) "
               f"({cal.get('epsilon_share', 0):g} of the target epsilon reserved for it)")
    else:
        how = f"fitted without differential privacy ({cal.get('source', 'held-out labelled training rows')})"
    text = (f"temperature scaling, temperature {cal['temperature']:.3g} fitted on {cal['rows']} labelled rows held "
            f"out from the classifier's training, {how}; the temperature is folded into the model file's last layer")
    return {**cal, "text": text}


def _waiver(waiver: Mapping | None) -> dict | None:
    """A waiver record with every key of ``WAIVER_KEYS`` (blank when the record lacks it)."""
    if not waiver:
        return None
    data = {key: "" if waiver.get(key) is None else str(waiver[key]) for key in WAIVER_KEYS}
    data.update((k, v) for k, v in waiver.items() if k not in data and v not in (None, ""))
    return data


def _waiver_text(waiver: Mapping | None) -> str:
    """``approver: ...; reason: ...; expires: ...`` first, whatever order the record has."""
    data = _waiver(waiver) or {}
    return "; ".join(f"{key}: {value}" for key, value in data.items() if value not in (None, ""))


def _outcome(outcome) -> dict:
    data = outcome.to_dict()
    data["blocking"] = outcome.blocking
    data["waiver"] = _waiver(outcome.waiver)
    data["waiver_text"] = _waiver_text(outcome.waiver)
    return data


def _decision(run: AuditRun) -> dict:
    decision = run.decision
    return {
        "verdict": decision.verdict,
        "passed": decision.passed,
        "exit_code": decision.exit_code,
        "outcomes": [_outcome(o) for o in decision.outcomes],
        "n_blockers": len(decision.blockers),
        "n_warnings": len(decision.warnings),
        "n_waived": sum(o.status == "waived" for o in decision.outcomes),
        "waivers": [
            {"rule_id": o.rule_id, **_waiver(o.waiver)}
            for o in decision.outcomes
            if o.status == "waived" and o.waiver
        ],
    }


def _checks(run: AuditRun) -> list[dict]:
    return [
        {
            "check": r.check,
            "status": r.status,
            "n_measurements": len(r.measurements),
            "reason": r.reason,
            "seconds": r.seconds,
            "rmf": list(CHECK_RMF.get(r.check, ())),
        }
        for r in run.results
    ]


# ---------------------------------------------------------------- privacy


def privacy_statement(training: TrainRecord) -> dict:
    """What differential privacy does and does not cover, stated so that nothing is overclaimed.

    ``headline`` and ``paragraphs`` are the honest wording; ``parameters`` lists the accountant's
    figures that the trainer recorded (missing keys are left out, never invented).
    """
    if training.dp is None:
        return {
            "private": False,
            "end_to_end": False,
            "scope": "none",
            "summary": "none",
            "headline": NO_DP,
            "paragraphs": [],
            "parameters": [],
        }
    dp = dict(training.dp)
    known = dict(_DP_PARAMETERS)
    parameters = [
        {"key": key, "label": label, "value": dp[key]} for key, label in _DP_PARAMETERS if key in dp
    ]
    parameters += [
        {"key": key, "label": key.replace("_", " "), "value": value}
        for key, value in dp.items()
        if key not in known
    ]
    if training.end_to_end_dp:
        return {
            "private": True,
            "end_to_end": True,
            "scope": training.dp_scope,
            "summary": "every phase that read the private training rows",
            "headline": END_TO_END_DP,
            "paragraphs": [DP_COVERAGE, *_levels_paragraph(training)],
            "parameters": parameters,
        }
    scope_text, phase = _DP_SCOPES.get(
        training.dp_scope,
        (
            f"the '{training.dp_scope}' phase was trained under DP-SGD; other phases were not",
            f"'{training.dp_scope}' phase",
        ),
    )
    if training.method and training.method != "none":
        encoder = (
            f"The encoder was pretrained with {training.method} on the same private training rows "
            f"({training.n_pretrain_rows} rows) without differential privacy. Its weights may "
            f"reveal those rows, and the reported (ε, δ) accounts for the {phase} only."
        )
    else:
        encoder = (
            "Parts of training that read the private training rows ran without differential "
            f"privacy; the reported (ε, δ) accounts for the {phase} only."
        )
    return {
        "private": True,
        "end_to_end": False,
        "scope": training.dp_scope,
        "summary": f"partial: the {phase} only",
        "headline": PARTIAL_DP.format(scope=scope_text),
        "paragraphs": [encoder, DP_COVERAGE, *_levels_paragraph(training)],
        "parameters": parameters,
    }


# ---------------------------------------------------------------- fairness


def _fairness_attributes(result: CheckResult, sensitive: Iterable[str]) -> list[str]:
    names = [m.subject for m in result.measurements if m.subject and "=" not in m.subject]
    names += list(sensitive)
    return list(dict.fromkeys(names))


def _split_group(subject: str, attributes: list[str]) -> tuple[str, str]:
    """``"sex=Female*race=White"`` -> ``("sex*race", "Female, White")`` using the known attributes.

    Matching against known attribute names (longest intersection first) keeps group values that
    themselves contain ``*`` or ``=`` intact.
    """
    for attribute in sorted(attributes, key=lambda a: -a.count("*")):
        keys = attribute.split("*")
        rest, values = subject, []
        for i, key in enumerate(keys):
            if not rest.startswith(key + "="):
                break
            rest = rest[len(key) + 1 :]
            if i + 1 < len(keys):
                marker = f"*{keys[i + 1]}="
                cut = rest.find(marker)
                if cut < 0:
                    break
                values.append(rest[:cut])
                rest = rest[cut + 1 :]
            else:
                values.append(rest)
        else:
            return attribute, ", ".join(values)
    key, _, value = subject.partition("=")
    return key, value


def _excluded_groups(table: Mapping, attributes: list[str]) -> tuple[list[dict], int | None]:
    """The groups of one attribute left out of its gaps for having fewer than ``min_group_size``
    test rows, each with its size (from the ``groups_insufficient_data`` measurement)."""
    found = next((m for m in table["aggregates"] if m["metric"] == "groups_insufficient_data"), None)
    if found is None:
        return [], None
    details = found.get("details") or {}
    readable = {row["subject"]: row["group"] for row in table["groups"].values()}
    groups = details.get("groups") or {}
    excluded = [
        {"subject": subject, "group": readable.get(subject) or _split_group(subject, attributes)[1],
         "size": size}
        for subject, size in sorted(groups.items(), key=lambda item: (item[1], item[0]))
    ]
    return excluded, details.get("min_group_size")


def fairness_tables(result: CheckResult | None, sensitive: Iterable[str] = ()) -> list[dict]:
    """Per sensitive attribute: the aggregate disparities and a table of per-group metrics.

    Subjects follow the fairness check: ``"sex"`` / ``"sex*race"`` for aggregates (demographic
    parity, equalized odds), ``"sex=Female"`` for one group.
    """
    if result is None or result.status != "measured":
        return []
    attributes = _fairness_attributes(result, sensitive)
    tables: dict[str, dict] = {}

    def table(attribute: str) -> dict:
        return tables.setdefault(
            attribute, {"attribute": attribute, "aggregates": [], "metrics": [], "groups": {}}
        )

    for m in result.measurements:
        if "=" not in m.subject:
            table(m.subject)["aggregates"].append(m.to_dict())
            continue
        if "attribute" in m.details and isinstance(m.details.get("group"), Mapping):
            attribute, group = m.details["attribute"], ", ".join(map(str, m.details["group"].values()))
        else:
            attribute, group = _split_group(m.subject, attributes)
        t = table(attribute)
        row = t["groups"].setdefault(
            m.subject, {"group": group, "subject": m.subject, "values": {}}
        )
        row["values"][m.metric] = m.to_dict()
        if m.metric not in t["metrics"]:
            t["metrics"].append(m.metric)

    order = {name: i for i, name in enumerate(attributes)}
    out = []
    for attribute in sorted(tables, key=lambda a: order.get(a, len(order))):
        t = tables[attribute]
        t["excluded"], t["min_group_size"] = _excluded_groups(t, attributes)
        ranked = [m for m in FAIRNESS_GROUP_METRICS if m in t["metrics"]]
        t["metrics"] = ranked + [m for m in t["metrics"] if m not in ranked]
        t["groups"] = list(t["groups"].values())
        out.append(t)
    return out


# ---------------------------------------------------------------- model card


def front_matter(run: AuditRun, card: Mapping | None = None) -> dict:
    """Hugging Face model card metadata, with model-index results from the performance check."""
    card = card or _card(run)
    task = getattr(run.dataset, "task", "tabular-classification")
    tags = ["govssl", task]
    if run.training.method and run.training.method != "none":
        tags.append("self-supervised")
    if run.training.dp is not None:
        tags.append("differential-privacy")
    performance = _result(run, "performance")
    measured = performance.measurements if performance and performance.status == "measured" else ()
    data: dict[str, Any] = {}
    if card.get("license"):  # no licence is stated for the model unless the plan states one
        data["license"] = card["license"]
    data |= {
        "library_name": "pytorch",
        "tags": tags,
        "datasets": [run.dataset.name],
        "metrics": list(dict.fromkeys(m.metric for m in measured)),
    }
    results = [
        {"type": m.metric, "value": float(m.value)}
        for m in measured
        if m.subject == "" and _is_number(m.value) and math.isfinite(m.value)
    ]
    if results:
        data["model-index"] = [
            {
                "name": card["name"],
                "results": [
                    {
                        "task": {"type": task},
                        "dataset": {"type": run.dataset.name, "name": run.dataset.name},
                        "metrics": results,
                    }
                ],
            }
        ]
    return data


class _Quoted(str):
    """A string value the front matter writes as a double-quoted YAML scalar."""


class _FrontMatterDumper(yaml.SafeDumper):
    pass


_FrontMatterDumper.add_representer(
    _Quoted, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
)


def _quote_values(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _quote_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_quote_values(v) for v in value]
    return _Quoted(value) if isinstance(value, str) else value


# Inside a double-quoted YAML scalar these escapes read back as the characters themselves, while a
# Markdown or HTML viewer that shows the front matter sees no tag, entity or autolink to act on.
_YAML_ESCAPES = str.maketrans({"<": "\\x3c", ">": "\\x3e", "&": "\\x26"})


def front_matter_yaml(data: Mapping) -> str:
    """The front matter as YAML: every string value a double-quoted scalar written by PyYAML's
    emitter, with ``<``, ``>`` and ``&`` as YAML escapes, so ``yaml.safe_load`` gives back the
    exact text and no viewer of the raw front matter meets markup in it. Keys are govssl's own."""
    text = yaml.dump(
        _quote_values(data), Dumper=_FrontMatterDumper, sort_keys=False, allow_unicode=True,
        default_flow_style=False, width=float("inf"),
    )
    # every "<", ">" or "&" is inside a double-quoted value: keys and numbers never hold one
    return text.translate(_YAML_ESCAPES)


def caveats(run: AuditRun, card: Mapping | None = None) -> list[str]:
    """Known limits of the evidence: the plan's limitations, then what the run could not show."""
    card = card or _card(run)
    items = list(card.get("limitations") or [])
    for r in run.results:
        if r.status == "errored":
            items.append(f"The {r.check} check errored and produced no evidence: {r.reason}")
        elif r.status == "skipped":
            items.append(f"The {r.check} check was skipped: {r.reason}")
    for o in run.decision.outcomes:
        if o.status == "missing":
            items.append(f"Rule {o.rule_id} could not be evaluated: {o.message}")
        elif o.status == "inconclusive":
            items.append(f"Rule {o.rule_id} is inconclusive (its evidence could not have failed it): {o.message}")
        elif o.status == "waived":
            waiver = _waiver_text(o.waiver)
            items.append(
                f"Rule {o.rule_id} failed and was waived" + (f" ({waiver})" if waiver else "") + "."
            )
    privacy = privacy_statement(run.training)
    if privacy["private"] and not privacy["end_to_end"]:
        items.append(privacy["headline"])
    return items


def policy_rationales(run: AuditRun) -> tuple[dict[str, str], str]:
    """Each rule's ``rationale`` from the policy file the run recorded, and why none could be read.

    The store keeps the policy's path and sha256, not its text; the file is read again and quoted
    only while its sha256 is still the one recorded. Returns ``({rule id: rationale}, "")`` or
    ``({}, reason)``.
    """
    path = Path(run.policy_path) if run.policy_path else None
    if path is None:
        return {}, "the run records no policy file"
    try:
        content = path.read_bytes()
    except OSError:
        return {}, f"the policy file {path.name} is no longer where the audit read it"
    if hashlib.sha256(content).hexdigest() != run.policy_sha256:
        return {}, f"the policy file {path.name} has changed since the audit (its sha256 differs)"
    found = _rationales_in(content)
    if found is None:
        return {}, f"the policy file {path.name} does not read as YAML"
    return dict(found), ""


@functools.lru_cache(maxsize=32)
def _rationales_in(content: bytes) -> tuple[tuple[str, str], ...] | None:
    """The (rule id, rationale) pairs of a policy file's bytes (None: not YAML). Kept per content:
    the dashboard shows many runs of one policy, and the pure-Python YAML parser takes a tenth of
    a second for the default pack."""
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError:
        return None
    rules = data.get("rules") if isinstance(data, Mapping) else None
    return tuple(
        (str(rule["id"]), " ".join(str(rule.get("rationale") or "").split()))
        for rule in rules or ()
        if isinstance(rule, Mapping) and rule.get("id") is not None
    )


def _bound_of(threshold: str) -> str:
    """The ``use:`` of a rule from its threshold text ("<= 0.1 (ci_high)" -> "ci_high")."""
    for bound in ("ci_low", "ci_high"):
        if threshold.endswith(f"({bound})"):
            return bound
    return "estimate"


def _limit_words(threshold: str) -> str:
    """"<= 0.1 (ci_high)" -> "the limit is at most 0.1"; "== True" -> "the rule requires true"."""
    words = threshold.rsplit(" (", 1)[0] if _bound_of(threshold) != "estimate" else threshold
    if words.startswith("== "):
        value = words[3:]
        return f"the rule requires {value.lower() if value in ('True', 'False') else value}"
    for sign, text in ((">=", "at least"), ("<=", "at most")):
        words = words.replace(sign, text)
    return f"the limit is {words}"


def _reason(run: AuditRun, outcome, rationales: dict[str, str], unavailable: str) -> dict:
    """One blocking (or waived) rule in plain words: why the policy has it, what it measures,
    what was found against the limit and how sure the figure is."""
    found = next(
        (m for r in run.results if r.check == outcome.check and r.status == "measured"
         for m in r.measurements if m.metric == outcome.metric and m.subject == outcome.subject),
        None,
    )
    bound = _bound_of(outcome.threshold)
    rationale = rationales.get(outcome.rule_id, "")
    if not rationale:
        rationale_note = (f"The policy's rationale for this rule is not available: {unavailable}."
                          if unavailable else "The policy gives no rationale for this rule.")
    else:
        rationale_note = ""
    where = f" for {outcome.subject}" if outcome.subject else ""
    limit = _limit_words(outcome.threshold)
    if outcome.observed is None:
        figure = f"No figure could be judged: {outcome.message}. A rule without its evidence fails."
    else:
        judged = "" if bound == "estimate" else f", {BOUND_WORDS[bound]}"
        figure = f"{num(outcome.observed)}{where}{judged}; {limit}."
    certainty = ""
    if found is not None:
        confidence = (found.details or {}).get("confidence")
        level = f"{float(confidence):.0%} " if _is_number(confidence) else ""
        parts = []
        if bound != "estimate" and _is_number(found.value):
            parts.append(f"the measured value is {num(found.value)}")
        if found.ci_low is not None and found.ci_high is not None:
            parts.append(f"the {level}confidence interval is {num(found.ci_low)} to {num(found.ci_high)}")
        else:
            parts.append("no confidence interval was computed")
        if found.n is not None:
            parts.append(f"it rests on n = {found.n} test rows"
                         + (" (the smallest group included)" if outcome.check == "fairness" else ""))
        text = "; ".join(parts)
        certainty = text[0].upper() + text[1:] + "."
    return {
        "rule_id": outcome.rule_id,
        "status": outcome.status,
        "severity": outcome.severity,
        "check": outcome.check,
        "metric": outcome.metric,
        "subject": outcome.subject,
        "threshold": outcome.threshold,
        "rationale": rationale,
        "rationale_note": rationale_note,
        "meaning": metric_meaning(outcome.check, outcome.metric),
        "figure": figure,
        "certainty": certainty,
        "waiver_text": _waiver_text(outcome.waiver),
    }


def verdict_reasons(run: AuditRun) -> dict:
    """The "Why this verdict" section: each blocking rule (and each waived one) in plain words."""
    rationales, unavailable = policy_rationales(run)
    decision = run.decision
    blocking = [_reason(run, o, rationales, unavailable) for o in decision.blockers]
    waived = [_reason(run, o, rationales, unavailable) for o in decision.outcomes if o.status == "waived"]
    if not decision.outcomes:
        summary = "The policy has no rules, so nothing was gated."
    elif blocking:
        summary = (f"The release is blocked because {len(blocking)} blocking rule(s) of the policy "
                   f"{run.policy_name} failed or could not be evaluated:")
    else:
        summary = f"The release passes: every blocking rule of the policy {run.policy_name} held."
    warnings = [o.rule_id for o in decision.warnings]
    return {"summary": summary, "blocking": blocking, "waived": waived, "warnings": warnings,
            "rationale_unavailable": unavailable}


#: charts a check may leave in the run folder: (check, file, what it shows)
CHARTS = (
    ("robustness", "robustness.svg",
     "Accuracy under attack against attack strength (eps), for all test rows and per group"),
)


def _charts(run: AuditRun, out_dir: str | Path | None) -> list[dict]:
    """The charts of the run folder, linked relative to the folder the documents go to."""
    measured = {r.check for r in run.results if r.status == "measured"}
    found = []
    for check, name, title in CHARTS:
        path = Path(run.out_dir) / name
        if check in measured and path.is_file():
            link = os.path.relpath(path, Path(out_dir or run.out_dir)) if out_dir else name
            found.append({"check": check, "file": quote(PurePath(link).as_posix()), "title": title})
    return found


def _other_measurements(run: AuditRun) -> list[dict]:
    return [
        {"check": r.check, "measurements": [m.to_dict() for m in r.measurements]}
        for r in run.results
        if r.status == "measured" and r.check not in ("performance", "fairness") and r.measurements
    ]


def model_card_context(run: AuditRun, out_dir: str | Path | None = None) -> dict:
    """Everything the model card shows, in the sections of Mitchell et al. (2019).

    ``out_dir``: where the documents are written (default: the run folder), for the links to the
    run folder's charts.
    """
    card = _card(run)
    fm = front_matter(run, card)
    performance = _result(run, "performance")
    fairness = _result(run, "fairness")
    dataset = asdict(run.dataset)
    origin = data_origin(run)
    dataset.update(
        (key, origin[key]) for key in ("source", "license", "creator", "collection_notes")
    )
    dataset["from_manifest"] = origin["from_manifest"]
    dataset["manifest"] = origin["manifest"]
    dataset["n_features"] = len(run.dataset.numeric_features + run.dataset.categorical_features)
    dataset["missing"] = [{"column": k, "count": v} for k, v in run.dataset.missing.items() if v]
    tables = fairness_tables(fairness, run.dataset.sensitive)
    measured = [
        {"check": r.check, "metrics": list(dict.fromkeys(m.metric for m in r.measurements))}
        for r in run.results
        if r.status == "measured"
    ]
    return {
        "citation": MODEL_CARDS_CITATION,
        "run": _run_summary(run),
        "front_matter": fm,
        # YAML for machines (exact, quoted by safe_dump), not Markdown text: printed as it is
        "front_matter_yaml": Md(front_matter_yaml(fm)),
        "card": card,
        "training": _training(run.training),
        "dataset": dataset,
        "factors": {
            "sensitive": list(run.dataset.sensitive),
            "groups": [
                {"attribute": t["attribute"], "groups": [g["group"] for g in t["groups"]]}
                for t in tables
                if t["groups"]
            ],
        },
        "metrics": {"measured": measured, "gated": _decision(run)["outcomes"]},
        "checks": _checks(run),
        "performance": (
            [m.to_dict() for m in performance.measurements]
            if performance and performance.status == "measured"
            else []
        ),
        "fairness": tables,
        "other_measurements": _other_measurements(run),
        "decision": _decision(run),
        "why": verdict_reasons(run),
        "charts": _charts(run, out_dir),
        "privacy": privacy_statement(run.training),
        "calibration": calibration_summary(run.training),
        "ethical_considerations": list(card.get("ethical_considerations") or []),
        "caveats": caveats(run, card),
    }


# ---------------------------------------------------------------- RMF report


def _attestations(attestations: Iterable[Mapping] | None) -> dict[str, list[dict]]:
    by_subcategory: dict[str, list[dict]] = {}
    problems = []
    for i, a in enumerate(attestations or ()):
        if not isinstance(a, Mapping):
            problems.append(f"attestations[{i}]: must be a mapping; got {a!r}")
            continue
        missing = [k for k in ("subcategory", "by", "date", "statement") if not a.get(k)]
        if missing:
            problems.append(f"attestations[{i}]: missing {', '.join(missing)}")
            continue
        if not is_subcategory(a["subcategory"]):
            problems.append(
                f"attestations[{i}].subcategory: "
                + UNKNOWN_SUBCATEGORY.format(id=a["subcategory"])
            )
            continue
        by_subcategory.setdefault(a["subcategory"], []).append(
            {k: str(a[k]) for k in ("subcategory", "by", "date", "statement")}
        )
    if problems:
        raise ConfigError(f"{len(problems)} invalid attestation(s)", problems)
    return by_subcategory


def _headline_measurements(result: CheckResult) -> list[Measurement]:
    """Model-wide and aggregate figures: per-group fairness rows stay in the model card."""
    if result.check == "fairness":
        return [m for m in result.measurements if "=" not in m.subject]
    return list(result.measurements)


#: status of a subcategory in the RMF report -> how the documents name it
RMF_STATUSES = {
    "met": "evidenced, meets policy",
    "failed": "evidenced, fails policy",
    "ungated": "evidenced, not gated by the policy",
    "attested": "attested",
    "open": "open",
}


def _rmf_status(rules: list[dict], unevaluated: list[dict], checks: list[dict], attested: bool) -> str:
    """Evidence first: a rule that was evaluated, or a check that measured. With evidence, any
    rule naming the subcategory that failed, was waived or could not be evaluated (missing, or
    inconclusive: evidence without the power to fail it) fails
    the policy there; all rules passing meets it; evidence that no rule gates is "ungated".
    Missing, skipped or errored evidence alone is never evidence."""
    if rules or checks:
        if any(r["status"] in ("fail", "waived") for r in rules) or any(
            r["status"] in ("missing", "inconclusive") for r in unevaluated
        ):
            return "failed"
        return "met" if rules else "ungated"
    return "attested" if attested else "open"


def rmf_report_context(run: AuditRun, attestations: Iterable[Mapping] | None = None) -> dict:
    """All 72 AI RMF subcategories, each evidenced by this run (meeting the policy, failing it,
    or not gated by it), attested by a person, or open.

    Evidenced: a rule outcome that was evaluated (pass, fail or waived) names the subcategory in
    its ``rmf`` list, or a measured check maps to it through ``CHECK_RMF``. A rule that could
    not be evaluated (missing) or was skipped is shown but is no evidence. Attested: no evidence
    from the run, but a person's attestation. Open: neither. See ``_rmf_status`` for the rest.
    """
    attested = _attestations(attestations)
    outcomes = run.decision.outcomes
    known = {s.id for s in load_catalog()}
    unknown_ids = sorted({i for o in outcomes for i in o.rmf if i not in known})

    functions = {name: {"name": name, "categories": {}} for name in FUNCTIONS}
    counts = {name: {**dict.fromkeys(RMF_STATUSES, 0), "total": 0} for name in FUNCTIONS}
    evaluated = ("pass", "fail", "waived")
    for sub in load_catalog():
        rules = [_outcome(o) for o in outcomes if sub.id in o.rmf and o.status in evaluated]
        unevaluated = [_outcome(o) for o in outcomes if sub.id in o.rmf and o.status not in evaluated]
        checks, gaps = [], []
        for r in run.results:
            if sub.id not in CHECK_RMF.get(r.check, ()):
                continue
            if r.status == "measured" and r.measurements:
                shown = _headline_measurements(r)
                checks.append(
                    {
                        "check": r.check,
                        "n_measurements": len(r.measurements),
                        "measurements": [m.to_dict() for m in shown[:_MAX_EVIDENCE_MEASUREMENTS]],
                        "n_more": max(0, len(shown) - _MAX_EVIDENCE_MEASUREMENTS),
                    }
                )
            else:
                gaps.append({"check": r.check, "status": r.status, "reason": r.reason})
        status = _rmf_status(rules, unevaluated, checks, sub.id in attested)
        counts[sub.function][status] += 1
        counts[sub.function]["total"] += 1
        category = functions[sub.function]["categories"].setdefault(
            sub.category, {"id": sub.category, "text": sub.category_text, "subcategories": []}
        )
        category["subcategories"].append(
            {
                "id": sub.id,
                "text": sub.text,
                "status": status,
                "status_text": RMF_STATUSES[status],
                "rules": rules,
                "unevaluated_rules": unevaluated,
                "checks": checks,
                "check_gaps": gaps,
                "attestations": attested.get(sub.id, []),
            }
        )
    totals = {k: sum(c[k] for c in counts.values()) for k in (*RMF_STATUSES, "total")}
    card = _card(run)
    return {
        "citation": RMF_CITATION,
        "run": _run_summary(run),
        "system": {
            "name": card["name"],
            "version": card["version"],
            "overview": card.get("overview", ""),
            "intended_use": card.get("intended_use", ""),
            "dataset": run.dataset.name,
            "sensitive": list(run.dataset.sensitive),
            "training": _training(run.training),
            "privacy": privacy_statement(run.training),
        },
        "decision": _decision(run),
        "checks": _checks(run),
        "statuses": [{"status": k, "text": v} for k, v in RMF_STATUSES.items()],
        "counts": [{"function": name, **counts[name]} for name in FUNCTIONS],
        "totals": totals,
        "functions": [
            {"name": f["name"], "categories": list(f["categories"].values())}
            for f in functions.values()
        ],
        "unknown_rmf_ids": unknown_ids,
        "check_rmf": {check: list(ids) for check, ids in CHECK_RMF.items()},
        "caveats": caveats(run, card),
    }


# ---------------------------------------------------------------- evidence.json


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return _json_safe(value.item())
    return value


def evidence(run: AuditRun) -> dict:
    """``run.to_dict()`` with non-finite floats as the strings "nan", "inf", "-inf"."""
    return _json_safe(run.to_dict())
