"""Policy packs: load and validate them, and decide pass or blocked from the evidence."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from govssl._resources import policies_dir
from govssl._yaml import pydantic_problems, read_yaml_mapping
from govssl.errors import PolicyError
from govssl.policy._decide import decide, evaluate_rule
from govssl.policy._waivers import apply_waivers, unwaived
from govssl.policy.model import Decision, Policy, Rule, RuleOutcome

__all__ = [
    "load_policy", "decide", "evaluate_rule", "apply_waivers", "unwaived", "builtin_policy_path", "builtin_policies",
    "Policy", "Rule", "RuleOutcome", "Decision",
]


class _RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    check: str
    metric: str
    max: float | None = Field(None, allow_inf_nan=False)
    min: float | None = Field(None, allow_inf_nan=False)
    equals: float | bool | str | None = None
    use: Literal["estimate", "ci_low", "ci_high"] = "estimate"
    subject: str | None = None
    min_n: int | None = Field(None, ge=1)
    severity: Literal["block", "warn"] = "block"
    on_missing: Literal["fail", "skip"] = "fail"
    rmf: list[str] = []
    eu_ai_act: list[str] = []  # articles of the EU AI Act, "Art. 9" .. "Art. 15"
    rationale: str = ""
    stage: Literal["preflight", "checks"] = "checks"  # preflight rules are decided before training

    @model_validator(mode="after")
    def _has_threshold(self):
        if self.max is None and self.min is None and self.equals is None:
            raise ValueError("give a threshold: max, min or equals")
        if self.equals is not None and (self.max is not None or self.min is not None):
            raise ValueError("'equals' cannot be combined with 'max' or 'min'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is greater than 'max' ({self.max})")
        return self


class _PolicySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str = Field(min_length=1)
    version: int = Field(ge=1)
    description: str = ""
    rules: list[_RuleSpec] = Field(min_length=1)
    # provenance settings (optional): public key files relative to the policy file, licence ids
    trusted_keys: list[str] = []
    allowed_licenses: list[str] = []


def builtin_policies() -> list[str]:
    return sorted(p.stem for p in policies_dir().glob("*.yaml"))


def builtin_policy_path(name: str) -> Path:
    path = policies_dir() / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"no built-in policy '{name}'; built-in: {', '.join(builtin_policies())}")
    return path


def _semantic_problems(path: Path, rules: Any) -> list[str]:
    """Problems the schema cannot see, read from the raw rules so they are reported alongside it."""
    from govssl.checks.base import registered_checks
    from govssl.preflight import PreflightStage, stage_problems
    from govssl.formats.annex_iv import UNKNOWN_ARTICLE, is_article
    from govssl.rmf import is_subcategory

    if not isinstance(rules, list):
        return []  # the schema reports it
    problems = []
    from govssl.monitor._checks import MONITOR_CHECKS  # measurements of `govssl monitor`

    checks = {**registered_checks(), PreflightStage.name: PreflightStage, **MONITOR_CHECKS}
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue  # the schema reports it
        where = f"{path}: rules[{i}]"
        rule_id, check, metric = rule.get("id"), rule.get("check"), rule.get("metric")
        if isinstance(rule_id, str):
            if rule_id in seen:
                problems.append(f"{where}.id: duplicate rule id '{rule_id}'")
            seen.add(rule_id)
        if isinstance(check, str) and check not in checks:
            problems.append(f"{where}.check: unknown check '{check}'; known: {', '.join(sorted(checks))}")
        elif isinstance(check, str) and isinstance(metric, str) and metric not in checks[check].metrics:
            problems.append(
                f"{where}.metric: check '{check}' has no metric '{metric}'; "
                f"it measures {', '.join(checks[check].metrics)}"
            )
        problems += stage_problems(where, rule)
        rmf = rule.get("rmf")
        for j, rmf_id in enumerate(rmf if isinstance(rmf, list) else []):
            if isinstance(rmf_id, str) and not is_subcategory(rmf_id):
                problems.append(f"{where}.rmf[{j}]: '{rmf_id}' is not a NIST AI RMF 1.0 subcategory (e.g. 'MEASURE 2.11')")
        articles = rule.get("eu_ai_act")
        for j, article in enumerate(articles if isinstance(articles, list) else []):
            if isinstance(article, str) and not is_article(article):
                problems.append(f"{where}.eu_ai_act[{j}]: " + UNKNOWN_ARTICLE.format(id=article))
    return problems


def _key_problems(path: Path, keys: Any) -> list[str]:
    from govssl.errors import ConfigError
    from govssl.provenance import load_public_key

    problems = []
    for i, key in enumerate(keys if isinstance(keys, list) else []):
        if isinstance(key, str):
            try:
                load_public_key(path.resolve().parent / key)
            except ConfigError as exc:
                problems.append(f"{path}: trusted_keys[{i}]: {exc}")
    return problems


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy pack; every problem is reported at once in one PolicyError."""
    path = Path(path)
    data = read_yaml_mapping(path, PolicyError, "policy")
    problems = []
    try:
        spec = _PolicySpec.model_validate(data)
    except ValidationError as exc:
        problems = pydantic_problems(path, exc)
    problems += _semantic_problems(path, data.get("rules"))
    problems += _key_problems(path, data.get("trusted_keys"))
    if problems:
        raise PolicyError(f"{path}: the policy has {len(problems)} problem(s)", problems)
    rules = tuple(
        Rule(**{**r.model_dump(), "rmf": tuple(r.rmf), "eu_ai_act": tuple(dict.fromkeys(r.eu_ai_act))})
        for r in spec.rules
    )
    return Policy(
        name=spec.policy, version=spec.version, rules=rules, path=str(path.resolve()),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(), description=spec.description,
        trusted_keys=tuple(str(path.resolve().parent / k) for k in spec.trusted_keys),
        allowed_licenses=tuple(spec.allowed_licenses),
    )
