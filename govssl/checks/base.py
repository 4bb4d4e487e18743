"""The check interface: a check measures, a policy decides (DESIGN.md, "Key interfaces").

Checks register themselves with :func:`register_check`; the plan names which run with which
parameters. No threshold lives inside a check.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # heavy imports only for type checkers
    from govssl.data import Dataset
    from govssl.train import TrainResult

__all__ = [
    "Measurement",
    "CheckResult",
    "CheckContext",
    "Check",
    "register_check",
    "create_check",
    "registered_checks",
]

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


@dataclass
class CheckContext:
    """Everything a check may look at. Built once by the audit after training."""

    dataset: "Dataset"
    train: "TrainResult"
    seed: int
    out_dir: Any  # pathlib.Path of the run's output folder (charts go there)
    progress: Any = None  # govssl.progress.Progress (NullProgress when None)
    plan: Any = None  # the AuditPlan: checks that retrain (poisoning) reuse its training recipe
    policy: Any = None  # the Policy: its provenance settings (trusted keys, allowed licences)
    manifest: Any = None  # govssl.provenance.ManifestReport verified before training, or None


class Check(ABC):
    """A family of measurements. Subclasses declare ``name``, ``metrics`` and ``params`` defaults."""

    name: str = ""
    #: every metric this check can emit; policies are validated against it
    metrics: tuple[str, ...] = ()
    #: parameter defaults; a plan may override any of them and nothing else
    defaults: dict[str, Any] = {}

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)}; "
                f"'{self.name}' takes {', '.join(sorted(self.defaults)) or 'no parameters'}"
            )
        self.params = {**self.defaults, **params}

    @abstractmethod
    def measure(self, ctx: CheckContext) -> list[Measurement]:
        """Return the measurements. Raise to report an error; the audit records it and goes on."""

    def run(self, ctx: CheckContext) -> CheckResult:
        started = time.perf_counter()
        try:
            measurements = tuple(self.measure(ctx))
        except SkipCheck as skip:
            return CheckResult(self.name, "skipped", (), str(skip), time.perf_counter() - started)
        except Exception as exc:  # a crashing check is evidence too, never a crashed audit
            reason = f"{type(exc).__name__}: {exc}"
            return CheckResult(self.name, "errored", (), reason, time.perf_counter() - started)
        return CheckResult(self.name, "measured", measurements, "", time.perf_counter() - started)


class SkipCheck(Exception):
    """Raised by a check that does not apply (e.g. privacy audit of a model without DP)."""


_REGISTRY: dict[str, type[Check]] = {}


def register_check(name: str, force: bool = False):
    """Class decorator: ``@register_check("fairness")``. A second registration raises unless forced."""

    def decorate(cls: type[Check]) -> type[Check]:
        if name in _REGISTRY and not force:
            raise ValueError(f"a check named '{name}' is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_builtin_checks() -> None:
    # Importing the modules registers their checks.
    from govssl.checks import fairness, performance  # noqa: F401
    from govssl.checks import data_quality, provenance  # noqa: F401
    from govssl.checks import label_efficiency  # noqa: F401
    from govssl.checks import poisoning, privacy, robustness  # noqa: F401


def registered_checks() -> dict[str, type[Check]]:
    _load_builtin_checks()
    return dict(_REGISTRY)


def create_check(name: str, **params: Any) -> Check:
    checks = registered_checks()
    if name not in checks:
        raise KeyError(name)
    return checks[name](**params)
