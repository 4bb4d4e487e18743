"""The evidence types every part of govssl passes around: a :class:`Measurement` and the
:class:`CheckResult` that holds a check's measurements (DESIGN.md, "Key interfaces").

They live apart from the checks so that the policy, the store and the documents can read
evidence without importing the checks themselves (pandas, scikit-learn, ART): reading a plan or
a policy stays fast, and a bad file is reported before anything heavy is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Measurement", "CheckResult", "Value"]

Value = float | bool | str


@dataclass(frozen=True)
class Measurement:
    """One measured figure. ``subject`` says what it is about ("sex=Female", "sex", "" = model-wide)."""

    check: str
    metric: str
    value: Value
    subject: str = ""
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "metric": self.metric,
            "subject": self.subject,
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n": self.n,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Measurement":
        return cls(
            check=d["check"],
            metric=d["metric"],
            value=d["value"],
            subject=d.get("subject", ""),
            ci_low=d.get("ci_low"),
            ci_high=d.get("ci_high"),
            n=d.get("n"),
            details=dict(d.get("details") or {}),
        )


@dataclass(frozen=True)
class CheckResult:
    """What one check produced. Errored and skipped checks are results too."""

    check: str
    status: Literal["measured", "skipped", "errored"]
    measurements: tuple[Measurement, ...] = ()
    reason: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "measurements": [m.to_dict() for m in self.measurements],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CheckResult":
        return cls(
            check=d["check"],
            status=d["status"],
            measurements=tuple(Measurement.from_dict(m) for m in d.get("measurements", [])),
            reason=d.get("reason", ""),
            seconds=float(d.get("seconds", 0.0)),
        )
