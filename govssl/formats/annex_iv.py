"""EU AI Act technical documentation (Annex IV of Regulation (EU) 2024/1689) from an audit run.

``eu_ai_act.json`` carries the nine points of Annex IV and the seven articles of Chapter III,
Section 2 (Art. 9 to 15), summarised in govssl's own words with their references. Policy rules
name the articles they evidence with ``eu_ai_act:``; ``CHECK_EU_AI_ACT`` maps each check family
to the articles its measurements evidence (our reading, not the Commission's).

:func:`annex_iv_context` fills each point from the run where it can be derived and leaves it open
otherwise, and gives each article the same statuses as the NIST AI RMF report. A figure that
failed a rule, was waived, or is missing (a check that did not run, errored or lacked the power
to fail the rule) never makes a point or an article "meets policy".

Attestations for this framework are stored in the attestations table's ``subcategory`` column
as ``eu-ai-act:<item>`` (``eu-ai-act:Art. 14``, ``eu-ai-act:Annex IV(8)``); NIST AI RMF
subcategories are stored as they always were, without a prefix. No schema change was needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "FRAMEWORKS",
    "ATTESTATION_PREFIX",
    "SOURCE",
    "STATUSES",
    "POINT_STATUSES",
    "CHECK_EU_AI_ACT",
    "UNKNOWN_ARTICLE",
    "UNKNOWN_ITEM",
    "Article",
    "Point",
    "load_articles",
    "load_points",
    "catalog_source",
    "is_article",
    "is_item",
    "stored_item",
    "framework_of",
    "annex_iv_context",
    "monitoring_plan",
]

#: frameworks a person can attest against (``govssl attest --framework``)
FRAMEWORKS = ("nist-ai-rmf", "eu-ai-act")
#: how an EU AI Act item is stored in the attestations table's ``subcategory`` column
ATTESTATION_PREFIX = "eu-ai-act:"
SOURCE = "Regulation (EU) 2024/1689 (Artificial Intelligence Act), Annex IV and Articles 9 to 15"
UNKNOWN_ARTICLE = (
    "'{id}' is not an article of Regulation (EU) 2024/1689 that govssl maps; use one of "
    "Art. 9 (risk management), Art. 10 (data governance), Art. 11 (technical documentation), "
    "Art. 12 (record-keeping), Art. 13 (transparency), Art. 14 (human oversight), "
    "Art. 15 (accuracy, robustness and cybersecurity)"
)
UNKNOWN_ITEM = (
    "'{id}' is not an EU AI Act item govssl reports on; use an article 'Art. 9' to 'Art. 15' "
    "or a point of Annex IV 'Annex IV(1)' to 'Annex IV(9)'"
)

#: status of an article in the report -> its words (the statuses of the NIST AI RMF report)
STATUSES = {
    "met": "meets policy",
    "failed": "fails policy",
    "ungated": "measured, not gated by the policy",
    "attested": "attested",
    "open": "open",
}
#: status of an Annex IV point -> its words
POINT_STATUSES = {
    "met": "filled from the run, meets policy",
    "failed": "filled from the run, fails policy",
    "ungated": "filled from the run, not gated by the policy",
    "attested": "attested",
    "open": "open",
}

#: articles each check family's measurements evidence (govssl's reading of Art. 10 and 15)
CHECK_EU_AI_ACT: dict[str, tuple[str, ...]] = {
    # the level of accuracy and its metrics (Art. 15(1)-(3))
    "performance": ("Art. 15",),
    # examination of possible biases (Art. 10(2)(f)); accuracy for groups of persons (Art. 15)
    "fairness": ("Art. 10",),
    # resilience against adversarial examples / model evasion (Art. 15(4)-(5))
    "robustness": ("Art. 15",),
    # data poisoning and backdoors (Art. 15(5))
    "poisoning": ("Art. 15",),
    # confidentiality attacks: membership inference against the model (Art. 15(5))
    "privacy": ("Art. 15",),
    # the origin of data and its collection processes (Art. 10(2)(b))
    "provenance": ("Art. 10",),
    # data preparation, gaps and shortcomings, suitability (Art. 10(2)(c)-(h), 10(3))
    "data_quality": ("Art. 10",),
    # personal and special-category data among the inputs (Art. 10(2)(f), 10(5))
    "preflight": ("Art. 10",),
    # performance across the label budgets (Art. 15(1))
    "label_efficiency": ("Art. 15",),
}

#: rules whose figures each point reports: "*" every rule of the policy, else check families
_POINT_RULES: dict[int, tuple[str, ...]] = {
    2: ("*",),  # validation and testing procedures, metrics, test reports (Annex IV(2)(d), (g), (h))
    3: ("performance", "fairness", "label_efficiency"),  # levels of accuracy, overall and per group
    5: ("*",),  # the release decision is the risk management's acceptance step (Art. 9(5), 9(8))
}

_EVALUATED = ("pass", "fail", "waived")
_FAILING = ("fail", "waived", "missing", "inconclusive")


@dataclass(frozen=True)
class Article:
    id: str  # "Art. 15"
    title: str
    text: str


@dataclass(frozen=True)
class Point:
    number: int
    id: str  # "Annex IV(2)"
    title: str
    text: str
    articles: tuple[str, ...]


@cache
def _load() -> tuple[str, tuple[Article, ...], tuple[Point, ...]]:
    raw = json.loads(resources.files("govssl.formats").joinpath("eu_ai_act.json").read_text("utf-8"))
    articles = tuple(Article(**a) for a in raw["articles"])
    points = tuple(sorted((Point(**{**p, "articles": tuple(p["articles"])}) for p in raw["points"]),
                          key=lambda p: p.number))
    return raw["source"], articles, points


def load_articles() -> tuple[Article, ...]:
    """Art. 9 to Art. 15, in order."""
    return _load()[1]


def load_points() -> tuple[Point, ...]:
    """The nine points of Annex IV, in order."""
    return _load()[2]


def catalog_source() -> str:
    return _load()[0]


def is_article(article_id: Any) -> bool:
    """True for an exact id such as ``"Art. 15"`` (policies validate their ``eu_ai_act:`` lists)."""
    return isinstance(article_id, str) and article_id in {a.id for a in load_articles()}


def is_item(item: Any) -> bool:
    """True for an article (``"Art. 14"``) or a point of Annex IV (``"Annex IV(8)"``)."""
    return is_article(item) or (isinstance(item, str) and item in {p.id for p in load_points()})


def stored_item(framework: str, item: str) -> str:
    """How an attested item is stored: NIST subcategories as they are, EU items prefixed."""
    return ATTESTATION_PREFIX + item if framework == "eu-ai-act" else item


def framework_of(stored: str) -> tuple[str, str]:
    """``stored_item`` read back: ``(framework, item)``."""
    if isinstance(stored, str) and stored.startswith(ATTESTATION_PREFIX):
        return "eu-ai-act", stored[len(ATTESTATION_PREFIX):]
    return "nist-ai-rmf", stored


# ---------------------------------------------------------------- context


def _attestations(attestations: Iterable[Mapping] | None) -> dict[str, list[dict]]:
    """EU AI Act attestations by item; NIST ones are left to the RMF report."""
    from govssl.errors import ConfigError

    by_item: dict[str, list[dict]] = {}
    problems = []
    for i, a in enumerate(attestations or ()):
        if not isinstance(a, Mapping):
            problems.append(f"attestations[{i}]: must be a mapping; got {a!r}")
            continue
        framework, item = framework_of(a.get("subcategory"))
        if framework != "eu-ai-act":
            continue
        missing = [k for k in ("by", "date", "statement") if not a.get(k)]
        if missing:
            problems.append(f"attestations[{i}]: missing {', '.join(missing)}")
        elif not is_item(item):
            problems.append(f"attestations[{i}].subcategory: " + UNKNOWN_ITEM.format(id=item))
        else:
            by_item.setdefault(item, []).append(
                {"item": item, **{k: str(a[k]) for k in ("by", "date", "statement")}})
    if problems:
        raise ConfigError(f"{len(problems)} invalid attestation(s)", problems)
    return by_item


def _status(rules: list[dict], unevaluated: list[dict], evidence: bool, attested: bool) -> str:
    """Fail closed, then evidence: a rule that failed, was waived or could not be evaluated
    (missing or inconclusive) fails the policy there whatever else holds, and no attestation
    covers it; evaluated rules that all passed meet it; evidence that no rule gates is "ungated";
    otherwise a person's attestation, or open."""
    if any(r["status"] in _FAILING for r in rules) or any(r["status"] in _FAILING for r in unevaluated):
        return "failed"
    if rules:
        return "met"
    if evidence:
        return "ungated"
    return "attested" if attested else "open"


def monitoring_plan() -> dict | None:
    """The shipped post-market monitoring pack (``policies/monitoring.yaml``) as a plan to
    describe: its name, version, sha256 and rules; None when this installation has none.
    A pack that does not read as a policy is ``{"problem": ...}`` (the point stays open)."""
    import yaml

    from govssl._resources import policies_dir

    path = policies_dir() / "monitoring.yaml"
    if not path.is_file():
        return None
    content = path.read_bytes()
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        return {"problem": f"{path.name} does not read as YAML: {exc}".splitlines()[0]}
    rules = data.get("rules") if isinstance(data, Mapping) else None
    if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
        return {"problem": f"{path.name} has no list of rules"}
    shown = []
    for r in rules:
        limits = [f"{word} {r[key]}" for key, word in (("min", ">="), ("max", "<="), ("equals", "=="))
                  if r.get(key) is not None]
        shown.append({
            "id": str(r.get("id", "")), "check": str(r.get("check", "")), "metric": str(r.get("metric", "")),
            "threshold": " and ".join(limits), "severity": str(r.get("severity", "block")),
            "rationale": " ".join(str(r.get("rationale") or "").split()),
        })
    return {"problem": "", "file": path.name, "name": str(data.get("policy", "")),
            "version": data.get("version"), "sha256": hashlib.sha256(content).hexdigest(),
            "description": " ".join(str(data.get("description") or "").split()), "rules": shown}


def _headline(result) -> list[dict]:
    from govssl.reports._context import _headline_measurements

    return [m.to_dict() for m in _headline_measurements(result)]


def _point(number: int, point: Point, **fields) -> dict:
    return {"number": number, "id": point.id, "title": point.title, "text": point.text,
            "articles": list(point.articles), "facts": [], "notes": [], "gaps": [], "measurements": [],
            "files": [], "checks": [], "monitoring": None, "rules": [], "unevaluated_rules": [],
            "derived": True, **fields}


def _fact(label: str, value: Any) -> dict:
    return {"label": label, "value": "" if value is None else value}


def _points(run, card: Mapping, rmf: Mapping, outcomes: list[dict]) -> list[dict]:
    """The nine points, filled from the run where the run says it."""
    from govssl.reports._context import (
        calibration_summary, caveats, data_origin, policy_rationales, privacy_statement,
    )
    from govssl.reports._meaning import metric_meaning

    points = {p.number: p for p in load_points()}
    out: dict[int, dict] = {}
    training, ds = run.training, run.dataset

    # 1 general description
    p = _point(1, points[1])
    owners = ", ".join(
        " ".join(str(o.get(k) or "") for k in ("name", "contact")).strip() for o in card.get("owners") or ()
    )
    p["facts"] = [
        _fact("name", card["name"]), _fact("version", card.get("version", "")),
        _fact("provider (model card owners)", owners or "not stated"),
        _fact("intended purpose", card.get("intended_use") or "not stated"),
        _fact("overview", card.get("overview") or "not stated"),
        _fact("intended users", ", ".join(card.get("intended_users") or ()) or "not stated"),
        _fact("out-of-scope uses", "; ".join(card.get("out_of_scope_uses") or ()) or "not stated"),
        _fact("task", getattr(ds, "task", "")),
        _fact("form", f"PyTorch model file {training.model_path.rsplit('/', 1)[-1]} (sha256 {training.model_sha256})"
              if training.trained else "no model: the audit ended before training"),
        _fact("software", f"govssl {run.govssl_version}"),
    ]
    p["derived"] = bool(card.get("intended_use"))
    if not card.get("intended_use"):
        p["gaps"].append("The intended purpose is not stated (the plan's model_card.intended_use).")
    if not owners:
        p["gaps"].append("The provider is not stated (the plan's model_card.owners).")
    p["gaps"].append("How the system is placed on the market, the hardware it runs on, its user interface "
                     "and the instructions for use are not part of an audit run.")
    out[1] = p

    # 2 development process, training methodology and data
    p = _point(2, points[2])
    privacy = privacy_statement(training)
    origin = data_origin(run)
    calibration = calibration_summary(training)
    if training.trained:
        p["facts"] += [
            _fact("self-supervised pretraining", f"{training.method}, {training.pretrain_epochs} epoch(s) on "
                  f"{training.n_pretrain_rows} rows ({training.pretrain_data})"
                  if training.method and training.method != "none" else "none"),
            _fact("supervised training", f"{training.finetune_mode}, {training.finetune_epochs} epoch(s) on "
                  f"{training.n_labelled_rows} labelled rows (label fraction {training.label_fraction:g})"),
            _fact("architecture", f"{training.architecture}, {training.n_parameters} parameters"),
            _fact("seed", training.seed),
            _fact("calibration", calibration["text"] if calibration else "not recorded"),
        ]
    else:
        p["facts"].append(_fact("training", "none: the audit ended at preflight, before training"))
    p["facts"] += [
        _fact("differential privacy", f"{privacy['summary']}: {privacy['headline']}"),
        _fact("data set", f"{ds.name}: {ds.n_train} training and {ds.n_test} test rows, target "
              f"{ds.target}, {len(ds.numeric_features) + len(ds.categorical_features)} features"),
        _fact("data source", origin["source"] or "not declared"),
        _fact("data licence", origin["license"] or "not declared"),
        _fact("data creator", origin["creator"] or "not declared"),
        _fact("collection notes", origin["collection_notes"] or "not declared"),
        _fact("data manifest", origin["manifest"] or "none"),
    ]
    p["files"] = [{"path": str(f.get("path", "")).rsplit("/", 1)[-1], "sha256": f.get("sha256", "")}
                  for f in ds.files]
    p["notes"].append("The datasheet of this run answers the questions of Datasheets for Datasets about the "
                      "data (composition, collection, preprocessing, uses).")
    p["checks"] = [{"check": r.check, "status": r.status, "reason": r.reason} for r in run.results]
    p["gaps"].append("The human oversight measures assessed under Article 14 and any pre-determined changes "
                     "are the provider's to state (attest Art. 14).")
    out[2] = p

    # 3 monitoring, functioning and control
    p = _point(3, points[3])
    measured = {r.check: r for r in run.results if r.status == "measured"}
    for check in ("performance", "fairness"):
        if check in measured:
            p["measurements"] += _headline(measured[check])
    p["derived"] = "performance" in measured
    if "performance" not in measured:
        p["gaps"].append("The level of accuracy: the performance check did not measure in this run.")
    p["facts"] += [
        _fact("input features", ", ".join([*ds.numeric_features, *ds.categorical_features]) or "images"),
        _fact("sensitive features (groups)", ", ".join(ds.sensitive) or "none declared"),
        _fact("classes", ", ".join(ds.classes) or f"{ds.target} = {ds.positive_label} or not"),
    ]
    p["notes"] += caveats(run, card)
    p["notes"] += [f"{c.get('name', '')}: {c.get('mitigation', '')}".strip(": ")
                   for c in card.get("ethical_considerations") or () if isinstance(c, Mapping)]
    p["gaps"].append("The human oversight measures while in use, and how deployers interpret the output, "
                     "are the provider's to state (attest Art. 14).")
    out[3] = p

    # 4 appropriateness of the performance metrics
    p = _point(4, points[4])
    rationales, unavailable = policy_rationales(run)
    seen = set()
    for o in outcomes:
        if o["status"] == "skipped" or (o["check"], o["metric"]) in seen:
            continue
        seen.add((o["check"], o["metric"]))
        p["facts"].append(_fact(f"{o['check']}.{o['metric']}",
                                " ".join(x for x in (metric_meaning(o["check"], o["metric"]),
                                                     rationales.get(o["rule_id"], "")) if x) or "no rationale"))
    p["derived"] = bool(rationales) and bool(seen)
    if unavailable:
        p["gaps"].append(f"The policy's rationales could not be read: {unavailable}.")
    elif not seen:
        p["gaps"].append("No rule of the policy was evaluated.")
    out[4] = p

    # 5 risk management system
    p = _point(5, points[5])
    decision = run.decision
    p["facts"] = [
        _fact("policy", f"{run.policy_name} v{run.policy_version} (sha256 {run.policy_sha256})"),
        _fact("decision", f"{decision.verdict} ({len(decision.blockers)} blocking failure(s), "
              f"{len(decision.warnings)} warning(s), {sum(o.status == 'waived' for o in decision.outcomes)} waived)"),
        _fact("NIST AI RMF report", "; ".join(f"{s['text']}: {rmf['totals'][s['status']]}" for s in rmf["statuses"])
              + f" (of {rmf['totals']['total']} subcategories)"),
    ]
    p["notes"].append("Each rule of the policy is a risk acceptance criterion tested before release against a "
                      "previously defined metric and threshold (Art. 9(8)); a blocking failure stops the release "
                      "unless a named approver waives it until a date.")
    p["gaps"].append("The identification and evaluation of risks outside what the checks measure, and the "
                     "risk management measures adopted, are the provider's to state (attest Art. 9).")
    out[5] = p

    # 6 changes through the lifecycle
    p = _point(6, points[6], derived=False)
    p["facts"] = [_fact("this audit", f"run {run.run_id}, {run.created_at}, plan sha256 {run.plan_sha256}")]
    p["gaps"].append("The changes made through the lifecycle are the provider's to describe; each audit of the "
                     "system is a record in the hash-chained audit store.")
    out[6] = p

    # 7 standards applied
    p = _point(7, points[7])
    from govssl.reports._context import MODEL_CARDS_CITATION, RMF_CITATION
    from govssl.reports._datasheet import DATASHEETS_CITATION

    p["facts"] = [
        _fact("harmonised standards", "none cited by govssl"),
        _fact("risk management framework", RMF_CITATION),
        _fact("model documentation", MODEL_CARDS_CITATION),
        _fact("data documentation", DATASHEETS_CITATION),
        _fact("signed evidence", "in-toto Statement v1 in a DSSE envelope, Ed25519 signature"),
    ]
    p["gaps"].append("The harmonised standards applied, with their Official Journal references, are the "
                     "provider's to list.")
    out[7] = p

    # 8 EU declaration of conformity
    p = _point(8, points[8], derived=False)
    p["gaps"].append("The EU declaration of conformity (Article 47) is drawn up and signed by the provider.")
    out[8] = p

    # 9 post-market monitoring plan
    p = _point(9, points[9])
    plan = monitoring_plan()
    p["monitoring"] = plan
    p["derived"] = bool(plan) and not plan["problem"]
    if plan is None:
        p["gaps"].append("This installation has no post-market monitoring pack (policies/monitoring.yaml): "
                         "the monitoring plan is open.")
    elif plan["problem"]:
        p["gaps"].append(f"The post-market monitoring pack could not be read: {plan['problem']}.")
    else:
        p["notes"].append(f"After release, each batch of production data is checked with the monitoring pack "
                          f"{plan['name']} and recorded in the same audit store, linked to this run and the "
                          f"model's sha256.")
    out[9] = p

    for number, families in _POINT_RULES.items():
        chosen = [o for o in outcomes if "*" in families or o["check"] in families]
        out[number]["rules"] = [o for o in chosen if o["status"] in _EVALUATED]
        out[number]["unevaluated_rules"] = [o for o in chosen if o["status"] not in _EVALUATED]
    return [out[n] for n in sorted(out)]


def annex_iv_context(run, attestations: Iterable[Mapping] | None = None,
                     rmf: Mapping | None = None) -> dict:
    """The technical documentation of Annex IV for one run: the nine points in order, each filled
    from the run, attested or open, and the evidence of each article (Art. 9 to 15).

    ``attestations``: ``{subcategory, by, date, statement}`` records; those of this framework
    (``subcategory`` ``eu-ai-act:<item>``) are shown, the others ignored. ``rmf``: the run's
    NIST AI RMF report context (computed when not given), summarised under point 5.
    """
    from govssl.reports._context import (
        _card, _checks, _decision, _outcome, _run_summary, rmf_report_context,
    )

    attested = _attestations(attestations)
    rmf = rmf if rmf is not None else rmf_report_context(
        run, [a for a in attestations or () if isinstance(a, Mapping)
              and framework_of(a.get("subcategory"))[0] == "nist-ai-rmf"])
    card = _card(run)
    outcomes = [_outcome(o) for o in run.decision.outcomes]

    points = _points(run, card, rmf, outcomes)
    for p in points:
        p["attestations"] = attested.get(p["id"], [])
        p["status"] = _status(p["rules"], p["unevaluated_rules"], p["derived"], bool(p["attestations"]))
        p["status_text"] = POINT_STATUSES[p["status"]]

    articles = []
    known = {a.id for a in load_articles()}
    for article in load_articles():
        rules = [o for o in outcomes if article.id in o["eu_ai_act"] and o["status"] in _EVALUATED]
        unevaluated = [o for o in outcomes if article.id in o["eu_ai_act"] and o["status"] not in _EVALUATED]
        checks, gaps = [], []
        for r in run.results:
            if article.id not in CHECK_EU_AI_ACT.get(r.check, ()):
                continue
            if r.status == "measured" and r.measurements:
                shown = _headline(r)
                checks.append({"check": r.check, "n_measurements": len(r.measurements),
                               "measurements": shown[:12], "n_more": max(0, len(shown) - 12)})
            else:
                gaps.append({"check": r.check, "status": r.status, "reason": r.reason})
        status = _status(rules, unevaluated, bool(checks), article.id in attested)
        articles.append({
            "id": article.id, "title": article.title, "text": article.text, "status": status,
            "status_text": STATUSES[status], "rules": rules, "unevaluated_rules": unevaluated,
            "checks": checks, "check_gaps": gaps, "attestations": attested.get(article.id, []),
            "points": [p["id"] for p in points if article.id in p["articles"]],
        })
    counts = {k: sum(a["status"] == k for a in articles) for k in STATUSES}
    point_counts = {k: sum(p["status"] == k for p in points) for k in POINT_STATUSES}
    return {
        "citation": catalog_source(),
        "run": _run_summary(run),
        "system": {"name": card["name"], "version": card.get("version", "")},
        "decision": _decision(run),
        "checks": [{**c, "eu_ai_act": list(CHECK_EU_AI_ACT.get(c["check"], ()))} for c in _checks(run)],
        "statuses": [{"status": k, "text": v} for k, v in STATUSES.items()],
        "point_statuses": [{"status": k, "text": v} for k, v in POINT_STATUSES.items()],
        "points": points,
        "articles": articles,
        "counts": counts,
        "point_counts": point_counts,
        "unknown_articles": sorted({i for o in outcomes for i in o["eu_ai_act"] if i not in known}),
        "check_eu_ai_act": {check: list(ids) for check, ids in CHECK_EU_AI_ACT.items()},
    }
