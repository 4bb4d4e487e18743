"""Tests of the check interface: the registry, parameters, and Check.run turning a crash or a
skip into a CheckResult."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from govssl.checks import base
from govssl.checks.base import (
    Check, CheckParams, CheckParamsError, CheckResult, Measurement, SkipCheck, create_check, register_check,
    registered_checks,
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

    class Params(CheckParams):
        value: float = 1.0

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


def test_check_run__an_integrity_failure_ends_the_audit_instead_of_being_recorded():
    from govssl.errors import IntegrityError

    class _Changed(Check):
        name = "changed"
        metrics = ("x",)

        def measure(self, ctx):
            raise IntegrityError("cache.f32: the encoded-table cache changed during the audit")

    with pytest.raises(IntegrityError, match="changed during the audit"):
        _Changed().run(_ctx())


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
    assert _Constant.defaults == {"value": 1.0}
    assert PerformanceCheck(n_boot=10).params == {"n_boot": 10, "confidence": 0.95, "calibration_bins": 15}


def test_check__unknown_parameter_raises_naming_the_allowed_ones():
    with pytest.raises(ValueError) as info:
        _Constant(valeu=3)

    assert str(info.value) == "checks.constant.valeu: unknown parameter; 'constant' takes value"


def test_check__no_parameters_allowed():
    with pytest.raises(ValueError) as info:
        _Exploding(n_boot=3)

    assert str(info.value) == "checks.exploding.n_boot: unknown parameter; 'exploding' takes no parameters"


def test_check__every_bad_parameter_is_named_with_its_key():
    with pytest.raises(CheckParamsError) as info:
        PerformanceCheck(n_boot="abc", confidence=1.5, calibration_bins=0)

    assert info.value.problems == [
        ("n_boot", "Input should be a valid integer; got 'abc'"),
        ("confidence", "Input should be less than 1; got 1.5"),
        ("calibration_bins", "Input should be greater than or equal to 1; got 0"),
    ]
    assert str(info.value).startswith("checks.performance.n_boot: Input should be a valid integer")


def test_check__a_boolean_is_not_a_number_and_a_string_is_not_an_integer():
    with pytest.raises(CheckParamsError):
        PerformanceCheck(n_boot=True)
    with pytest.raises(CheckParamsError):
        PerformanceCheck(n_boot="100")
    with pytest.raises(CheckParamsError):
        create_check("fairness", intersections="yes")


def test_check__a_defaults_dict_instead_of_a_schema_is_refused():
    with pytest.raises(TypeError) as info:
        class _Old(Check):
            defaults = {"n": 1}

            def measure(self, ctx):
                return []

    assert "Params schema" in str(info.value)


# (check, parameters that are valid) and (check, parameter, bad value): every built-in schema's ranges
_GOOD = [
    ("performance", {"n_boot": 1, "confidence": 0.5, "calibration_bins": 10}),
    ("fairness", {"n_boot": 200, "confidence": 0.99, "min_group_size": 0, "intersections": False}),
    ("label_efficiency", {"n_boot": 10, "confidence": 0.9}),
    ("data_quality", {"pii_sample": 100}),
    ("provenance", {}),
    ("robustness", {"attacks": ["pgd"], "eps": [1, 0.5], "pgd_steps": 5, "pgd_rel_step_size": 0.5,
                    "pgd_random_restarts": 0, "max_rows": 10, "batch_size": 64, "immutable": ["age"],
                    "sensitive_immutable": False, "min_group_size": 5}),
    ("poisoning", {"rates": [0.1], "target_label": 1, "trigger_features": ["age"], "retrain_pretrain_epochs": 0,
                   "retrain_finetune_epochs": 2, "expected_poison": 0.1, "max_detection_rows": 100}),
    ("poisoning", {"trigger_features": None, "retrain_pretrain_epochs": None}),
    ("privacy", {"attacks": ["rule_based"], "attack_model": "gb", "max_rows": 2, "target_fpr": 0.01}),
]
_BAD = [
    ("performance", "n_boot", 0), ("performance", "n_boot", -5), ("performance", "confidence", 1.0),
    ("performance", "confidence", 0), ("performance", "calibration_bins", 2.5),
    ("fairness", "min_group_size", -1), ("fairness", "intersections", 1), ("fairness", "confidence", float("nan")),
    ("label_efficiency", "n_boot", "abc"), ("data_quality", "pii_sample", 0),
    ("robustness", "eps", []), ("robustness", "eps", [0.1, -0.1]), ("robustness", "eps", [float("inf")]),
    ("robustness", "attacks", ["cw"]), ("robustness", "attacks", []), ("robustness", "pgd_steps", 0),
    ("robustness", "pgd_rel_step_size", 0), ("robustness", "pgd_random_restarts", -1),
    ("robustness", "max_rows", 0), ("robustness", "batch_size", 0), ("robustness", "immutable", "age"),
    ("poisoning", "rates", [0.0]), ("poisoning", "rates", [1.0]), ("poisoning", "rates", []),
    ("poisoning", "target_label", -1), ("poisoning", "trigger_features", []),
    ("poisoning", "retrain_pretrain_epochs", -1), ("poisoning", "retrain_finetune_epochs", 0),
    ("poisoning", "expected_poison", 0), ("poisoning", "max_detection_rows", 0),
    ("privacy", "max_rows", "lots"), ("privacy", "max_rows", 1), ("privacy", "target_fpr", 1),
    ("privacy", "attacks", ["shadow"]), ("privacy", "attack_model", "xgboost"), ("privacy", "confidence", 1.5),
]


@pytest.mark.parametrize("name, params", _GOOD)
def test_builtin_schemas__accept_valid_parameters(name, params):
    check = create_check(name, **params)

    assert all(check.params[k] == v for k, v in params.items())


@pytest.mark.parametrize("name, key, value", _BAD)
def test_builtin_schemas__refuse_a_bad_value_naming_its_key(name, key, value):
    with pytest.raises(CheckParamsError) as info:
        create_check(name, **{key: value})

    assert [k.split("[")[0] for k, _ in info.value.problems] == [key]


def test_builtin_schemas__every_default_is_valid():
    for name, cls in registered_checks().items():
        assert cls(**cls.defaults).params == cls.defaults, name


def test_checks_base__imports_nothing_from_govssl_but_the_evidence_types_and_errors():
    import ast
    import inspect

    # imports for type checkers only (`if TYPE_CHECKING:`) never run
    tree = ast.parse(inspect.getsource(base))
    runtime = [n for n in tree.body if not (isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")]
    nodes = [node for top in runtime for node in ast.walk(top)]
    imported = [node.module for node in nodes if isinstance(node, ast.ImportFrom)]
    imported += [a.name for node in nodes if isinstance(node, ast.Import) for a in node.names]
    # govssl.evidence (Measurement, CheckResult) and govssl.errors import nothing from govssl in turn
    ours = sorted(m for m in imported if m and m.split(".")[0] == "govssl")
    assert imported and ours == ["govssl.errors", "govssl.evidence"]
    for module in ours:
        leaf = ast.parse(inspect.getsource(importlib.import_module(module)))
        assert not [n for n in ast.walk(leaf) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("govssl")]
        assert not [a for n in ast.walk(leaf) if isinstance(n, ast.Import) for a in n.names if a.name.startswith("govssl")]


def test_reading_a_policy__does_not_import_the_checks_before_the_file_is_read(tmp_path):
    # a bad policy file is reported before pandas, scikit-learn and ART are loaded
    import subprocess
    import sys

    (tmp_path / "p.yaml").write_text("policy: [unclosed\n", encoding="utf-8")
    code = ("import sys; from govssl.policy import load_policy\n"
            "try:\n    load_policy(sys.argv[1])\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
            "print(sorted(m for m in ('pandas', 'sklearn', 'govssl.checks') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.yaml")], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:2] == ["PolicyError", "[]"], out


def test_checks_package__registers_the_builtin_checks_on_import():
    import subprocess
    import sys

    code = "import govssl.checks.base as b; print(' '.join(sorted(b.registered_checks())))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["data_quality", "fairness", "label_efficiency", "performance", "poisoning", "privacy",
                   "provenance", "robustness"]


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


def test_test_split_scored_once_per_audit_and_read_only():
    """Performance and fairness read one shared scoring of the test split (the audit writes
    predictions.csv from it too); no check can change it for the next one."""
    import pandas as pd

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    sensitive = pd.DataFrame({"sex": rng.choice(["F", "M"], 400)})
    ctx = make_context(y, proba_from_scores(rng.random(400)), sensitive)
    calls = []
    scorer = ctx.train.predict_proba
    ctx.train.predict_proba = lambda X: calls.append(len(X)) or scorer(X)

    results = [create_check(name, n_boot=50).run(ctx) for name in ("performance", "fairness")]
    assert [r.status for r in results] == ["measured", "measured"]
    assert calls == [400]
    proba = ctx.test_proba()
    assert calls == [400] and not proba.flags.writeable
    with pytest.raises(ValueError):
        proba[0, 0] = 1.0
