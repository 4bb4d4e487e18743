"""The check interface: a check measures, a policy decides (DESIGN.md, "Key interfaces").

Checks register themselves with :func:`register_check`; the plan names which run with which
parameters. No threshold lives inside a check. Each check declares its parameters as a
:class:`CheckParams` schema (types, ranges, defaults; unknown keys refused), checked when the plan
is loaded and again when the check is built, so a bad value never reaches training.

This module imports nothing from govssl but the evidence types (:mod:`govssl.evidence`) and the
exception family (:mod:`govssl.errors`), which import nothing: the package ``govssl.checks``
imports the built-in check modules, which register themselves here.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from govssl.errors import IntegrityError
from govssl.evidence import CheckResult, Measurement, Value  # noqa: F401  (re-exported: the check interface)

if TYPE_CHECKING:  # heavy imports only for type checkers
    from govssl.data import Dataset
    from govssl.train import TrainResult

__all__ = [
    "Measurement",
    "CheckResult",
    "CheckContext",
    "Check",
    "CheckParams",
    "CheckParamsError",
    "PositiveInt",
    "Confidence",
    "Share",
    "SkipCheck",
    "register_check",
    "create_check",
    "registered_checks",
]

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
    _test_proba: Any = field(default=None, init=False, repr=False, compare=False)

    def test_proba(self):
        """The trained model's class probabilities on the test split, one row per test row.

        Scored once per audit and shared: predictions.csv, performance, fairness and label
        efficiency all read the same array, where each scored the whole split again (at 10M rows
        sharing took 3.3 to 3.6 s off each of the three checks; docs/scale.md). Read-only, so
        that no check can change what the next one sees.
        """
        if self._test_proba is None:
            proba = self.train.predict_proba(self.dataset.X_test)
            proba.setflags(write=False)
            self._test_proba = proba
        return self._test_proba


class CheckParams(BaseModel):
    """Base of every check's parameter schema: strict types (``true`` is not a number, ``"5"`` not
    an integer), no infinities or NaN, and no key the schema does not declare."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


#: parameter types shared by several checks
PositiveInt = Annotated[int, Field(ge=1)]
Confidence = Annotated[float, Field(gt=0, lt=1, description="level of the confidence intervals, in (0, 1)")]
Share = Annotated[float, Field(gt=0, lt=1)]


class CheckParamsError(ValueError):
    """Parameters a check's schema refuses. ``problems`` holds one ``(key, message)`` per problem."""

    def __init__(self, check: str, problems: list[tuple[str, str]]):
        self.check = check
        self.problems = list(problems)
        super().__init__("; ".join(f"checks.{check}.{key}: {msg}" if key else f"checks.{check}: {msg}"
                                   for key, msg in self.problems))


def _params_problems(check: str, schema: type[CheckParams], exc: ValidationError) -> list[tuple[str, str]]:
    takes = ", ".join(schema.model_fields) or "no parameters"
    problems = []
    for error in exc.errors():
        key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
        if error["type"] == "extra_forbidden":
            problems.append((key, f"unknown parameter; '{check}' takes {takes}"))
            continue
        msg = error["msg"]
        if "input" in error and error["type"] != "missing":
            msg += f"; got {error['input']!r}"
        problems.append((key, msg))
    return problems


class Check(ABC):
    """A family of measurements. Subclasses declare ``name``, ``metrics`` and a ``Params`` schema
    (a :class:`CheckParams` subclass whose field defaults are the check's defaults)."""

    name: str = ""
    #: every metric this check can emit; policies are validated against it
    metrics: tuple[str, ...] = ()
    #: the parameter schema; a plan may set any of its fields and nothing else
    Params: ClassVar[type[CheckParams]] = CheckParams
    #: the schema's defaults (derived from ``Params``; read-only by convention)
    defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "defaults" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: declare the parameters as a Params schema (a CheckParams "
                            f"subclass), not as a 'defaults' dict")
        if not (isinstance(cls.Params, type) and issubclass(cls.Params, CheckParams)):
            raise TypeError(f"{cls.__name__}.Params must be a subclass of CheckParams")
        cls.defaults = cls.Params().model_dump()

    @classmethod
    def validate_params(cls, params: Any) -> dict[str, Any]:
        """The parameters with the defaults filled in; raises :class:`CheckParamsError` listing
        every key the schema refuses."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise CheckParamsError(cls.name, [("", f"parameters must be a mapping of names to values; got {params!r}")])
        try:
            return cls.Params.model_validate(params).model_dump()
        except ValidationError as exc:
            raise CheckParamsError(cls.name, _params_problems(cls.name, cls.Params, exc)) from None

    def __init__(self, **params: Any):
        self.params = self.validate_params(params)

    @abstractmethod
    def measure(self, ctx: CheckContext) -> list[Measurement]:
        """Return the measurements. Raise to report an error; the audit records it and goes on.
        An IntegrityError (an input of the audit changed under it) is not recorded: it ends the
        audit, which then stores nothing (exit 3)."""

    def run(self, ctx: CheckContext) -> CheckResult:
        started = time.perf_counter()
        try:
            measurements = tuple(self.measure(ctx))
        except SkipCheck as skip:
            return CheckResult(self.name, "skipped", (), str(skip), time.perf_counter() - started)
        except IntegrityError:  # the audit's inputs changed under it: no run stands on them (exit 3)
            raise
        except Exception as exc:  # a crashing check is evidence too, never a crashed audit
            reason = f"{type(exc).__name__}: {exc}"
            return CheckResult(self.name, "errored", (), reason, time.perf_counter() - started)
        return CheckResult(self.name, "measured", measurements, "", time.perf_counter() - started)


class SkipCheck(Exception):
    """Raised by a check to declare that it does not apply to this model or data (fairness without
    sensitive features, label efficiency without a supervised baseline). Only this exception makes
    a ``skipped`` result; any other exception, a missing library included, makes an ``errored``
    one, which fails every rule that reads the check (govssl.policy.decide)."""


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


def registered_checks() -> dict[str, type[Check]]:
    """Every registered check by name. The built-in ones register when ``govssl.checks`` is
    imported, which importing this module does first."""
    return dict(_REGISTRY)


def create_check(name: str, **params: Any) -> Check:
    if name not in _REGISTRY:
        raise KeyError(name)
    return _REGISTRY[name](**params)
