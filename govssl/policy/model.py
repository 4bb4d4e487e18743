"""Policy records: rules, the outcome of each rule, and the decision (DESIGN.md, "Policy packs")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Rule", "Policy", "RuleOutcome", "Decision", "FAILING"]

Severity = Literal["block", "warn"]
Bound = Literal["estimate", "ci_low", "ci_high"]
OutcomeStatus = Literal["pass", "fail", "missing", "inconclusive", "skipped", "waived"]
#: statuses that fail closed: a failed rule, and a rule whose evidence is absent or lacked the power to fail it
FAILING = ("fail", "missing", "inconclusive")


@dataclass(frozen=True)
class Rule:
    id: str
    check: str
    metric: str
    max: float | None = None
    min: float | None = None
    equals: float | bool | str | None = None
    use: Bound = "estimate"
    subject: str | None = None
    min_n: int | None = None  # measurements on fewer rows are insufficient data, not evidence
    severity: Severity = "block"
    on_missing: Literal["fail", "skip"] = "fail"
    rmf: tuple[str, ...] = ()
    rationale: str = ""
    eu_ai_act: tuple[str, ...] = ()  # articles of Regulation (EU) 2024/1689 the rule evidences, "Art. 15"
    stage: Literal["preflight", "checks"] = "checks"  # preflight: decided before training

    def threshold_text(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.equals is not None:
            parts.append(f"== {self.equals}")
        bound = "" if self.use == "estimate" else f" ({self.use})"
        return " and ".join(parts) + bound


@dataclass(frozen=True)
class Policy:
    name: str
    version: int
    rules: tuple[Rule, ...]
    path: str = ""
    sha256: str = ""
    description: str = ""
    trusted_keys: tuple[str, ...] = ()  # public key files of trusted data signers
    allowed_licenses: tuple[str, ...] = ()  # licence ids data may carry (SPDX-like, case-insensitive)


@dataclass(frozen=True)
class RuleOutcome:
    """How one rule fared: the worst measurement it saw, and why it passed or failed."""

    rule_id: str
    check: str
    metric: str
    severity: str
    status: OutcomeStatus
    observed: float | bool | str | None  # the value the rule compared (estimate or a CI bound)
    subject: str  # subject of the worst measurement
    threshold: str
    message: str
    rmf: tuple[str, ...] = ()
    waiver: dict | None = None
    eu_ai_act: tuple[str, ...] = ()

    @property
    def blocking(self) -> bool:
        return self.severity == "block" and self.status in FAILING

    def to_dict(self) -> dict:
        return {
            "rule_id": self.rule_id,
            "check": self.check,
            "metric": self.metric,
            "severity": self.severity,
            "status": self.status,
            "observed": self.observed,
            "subject": self.subject,
            "threshold": self.threshold,
            "message": self.message,
            "rmf": list(self.rmf),
            "waiver": self.waiver,
            "eu_ai_act": list(self.eu_ai_act),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RuleOutcome":
        return cls(
            rule_id=d["rule_id"],
            check=d["check"],
            metric=d["metric"],
            severity=d["severity"],
            status=d["status"],
            observed=d.get("observed"),
            subject=d.get("subject", ""),
            threshold=d.get("threshold", ""),
            message=d.get("message", ""),
            rmf=tuple(d.get("rmf") or ()),
            waiver=d.get("waiver"),
            eu_ai_act=tuple(d.get("eu_ai_act") or ()),
        )


@dataclass(frozen=True)
class Decision:
    """pass or blocked. ``exit_code`` follows DESIGN.md: 0 pass, 1 blocked.

    Blocked when a blocking rule failed, lacks its evidence or its evidence lacked the power to
    fail it (``inconclusive``), and also when no rule applied (no
    rules, or every rule skipped): a policy that looked at nothing cannot pass a release. Both
    are derived from the outcomes alone, so a decision read back from the store (or from
    ``to_dict``) gives the same verdict and the same message.
    """

    outcomes: tuple[RuleOutcome, ...]
    passed: bool = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "passed", bool(self.applied) and not any(o.blocking for o in self.outcomes))

    @property
    def applied(self) -> list[RuleOutcome]:
        """Outcomes of the rules that were evaluated: every status but ``skipped``."""
        return [o for o in self.outcomes if o.status != "skipped"]

    @property
    def nothing_evaluated(self) -> str:
        """Why the decision is blocked although no rule failed: no rule was evaluated ("" when
        some rule was)."""
        if self.applied:
            return ""
        if not self.outcomes:
            return "no rule was evaluated: the policy has no rules"
        checks = sorted({o.check for o in self.outcomes})
        return (f"no rule was evaluated: all {len(self.outcomes)} rule(s) of the policy were skipped "
                f"(they read {', '.join(checks)}, which the plan does not run or which do not apply); "
                f"a release needs at least one evaluated rule")

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "blocked"

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def warnings(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if o.severity == "warn" and o.status in FAILING]

    @property
    def blockers(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if o.blocking]

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "nothing_evaluated": self.nothing_evaluated,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Decision":
        return cls(tuple(RuleOutcome.from_dict(o) for o in d.get("outcomes", [])))
