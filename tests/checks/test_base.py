"""Tests of the check interface: the registry, parameters, and Check.run turning a crash or a
skip into a CheckResult."""

from __future__ import annotations

import math

import numpy as np
import pytest

from govssl.checks import base
from govssl.checks.base import (
    Check, CheckResult, Measurement, SkipCheck, create_check, register_check, registered_checks,
)
from govssl.checks.fairness import FairnessCheck
from govssl.checks.performance import PerformanceCheck

from ._fakes import make_context, proba_from_scores


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, so test registrations do not leak into other tests."""
    copy = dict(registered_checks())
    monkeypatch.setattr(base, "_REGISTRY", copy)
    return copy


class _Exploding(Check):
    name = "exploding"
    metrics = ("x",)

    def measure(self, ctx):
        raise RuntimeError("the model file is truncated")


class _NotApplicable(Check):
    name = "not-applicable"
    metrics = ("x",)

    def measure(self, ctx):
        raise SkipCheck("the model was trained without DP")


class _Constant(Check):
    name = "constant"
    metrics = ("x",)
    defaults = {"value": 1.0}

    def measure(self, ctx):
        return [Measurement(self.name, "x", self.params["value"])]


def _ctx():
    return make_context([0, 1], proba_from_scores([0.2, 0.8]))


def test_check_run__crash_becomes_an_errored_result():
    result = _Exploding().run(_ctx())

    assert result.check == "exploding"
    assert result.status == "errored"
    assert result.measurements == ()
    assert result.reason == "RuntimeError: the model file is truncated"
    assert result.seconds >= 0.0


def test_check_run__skip_becomes_a_skipped_result():
    result = _NotApplicable().run(_ctx())

    assert (result.status, result.reason, result.measurements) == ("skipped", "the model was trained without DP", ())


def test_check_run__measurements_become_a_measured_result():
    result = _Constant(value=2.5).run(_ctx())

    assert result.status == "measured" and result.reason == ""
    assert result.measurements == (Measurement("constant", "x", 2.5),)


def test_check_run__bad_context_errors_instead_of_crashing():
    # a model that returns the wrong shape is evidence of a broken model, not a crashed audit
    ctx = make_context([0, 1, 1], np.array([[0.5], [0.5], [0.5]]))

    result = PerformanceCheck(n_boot=10).run(ctx)

    assert result.status == "errored"
    assert result.reason.startswith("IndexError: ")


def test_check__parameters_override_defaults():
    assert _Constant().params == {"value": 1.0}
    assert _Constant(value=3).params == {"value": 3}
    assert PerformanceCheck(n_boot=10).params == {"n_boot": 10, "confidence": 0.95, "calibration_bins": 15}


def test_check__unknown_parameter_raises_naming_the_allowed_ones():
    with pytest.raises(ValueError) as info:
        _Constant(valeu=3)

    assert str(info.value) == "unknown parameter(s) valeu; 'constant' takes value"


def test_check__no_parameters_allowed():
    with pytest.raises(ValueError) as info:
        _Exploding(n_boot=3)

    assert str(info.value) == "unknown parameter(s) n_boot; 'exploding' takes no parameters"


def test_registered_checks__has_the_builtin_checks():
    checks = registered_checks()

    assert checks["performance"] is PerformanceCheck
    assert checks["fairness"] is FairnessCheck
    assert PerformanceCheck.name == "performance" and FairnessCheck.name == "fairness"


def test_register_check__same_name_twice_raises(registry):
    @register_check("my-check")
    class First(_Constant):
        pass

    with pytest.raises(ValueError) as info:
        @register_check("my-check")
        class Second(_Constant):
            pass

    assert str(info.value) == "a check named 'my-check' is already registered"
    assert registry["my-check"] is First
    assert First.name == "my-check"


def test_register_check__builtin_name_cannot_be_taken(registry):
    with pytest.raises(ValueError) as info:
        register_check("fairness")(type("Impostor", (_Constant,), {}))

    assert str(info.value) == "a check named 'fairness' is already registered"
    assert registry["fairness"] is FairnessCheck


def test_register_check__force_replaces(registry):
    register_check("my-check")(type("First", (_Constant,), {}))
    second = register_check("my-check", force=True)(type("Second", (_Constant,), {}))

    assert registry["my-check"] is second


def test_register_check__test_registrations_do_not_leak():
    assert "my-check" not in registered_checks()


def test_create_check__by_name_with_parameters():
    check = create_check("fairness", min_group_size=5)

    assert isinstance(check, FairnessCheck)
    assert check.params["min_group_size"] == 5


def test_create_check__unknown_name_raises_key_error():
    with pytest.raises(KeyError):
        create_check("no-such-check")


def test_check_result__round_trips_through_dict():
    result = CheckResult("fairness", "measured", (
        Measurement("fairness", "equalized_odds_difference", 0.12, "sex", 0.05, 0.2, 100, {"groups": ["a", "b"]}),
        Measurement("fairness", "count", 3.0, "sex=Female", n=3),
    ), seconds=1.25)

    again = CheckResult.from_dict(result.to_dict())

    assert again == result


def test_measurement__nan_value_survives_the_round_trip():
    m = Measurement.from_dict(Measurement("fairness", "demographic_parity_ratio", math.nan, "race").to_dict())

    assert math.isnan(m.value) and m.subject == "race"
