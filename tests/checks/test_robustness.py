"""Tests of the robustness check: ART's PGD against a plain PyTorch PGD on the same model and
seed, immutable features, per-group results and the chart."""

from __future__ import annotations

from xml.etree import ElementTree

import numpy as np
import pytest
import torch
from torch import nn

from govssl.checks._art import art_classifier, input_space
from govssl.checks.robustness import RobustnessCheck, attack_inputs
from govssl.errors import ConfigError

from tests._reference import torch_pgd

from ._trained import cached_context

SEED = 7


@pytest.fixture(scope="module")
def tabular_model(adult_csvs):
    """A plain MLP fitted (no DP) on encoded Adult rows, with the attackable input space."""
    from govssl.data import TableEncoder, read_table

    train = read_table(adult_csvs[0])
    numeric = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    categorical = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex"]
    encoder = TableEncoder(numeric, categorical).fit(train)
    X = encoder.transform(train)
    y = (train["income"] == ">50K").to_numpy(dtype=np.int64)
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(X.shape[1], 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(Xt), yt).backward()
        optimizer.step()
    model.eval()
    ranges = encoder.numeric_ranges()
    low, high = np.zeros(X.shape[1], np.float32), np.ones(X.shape[1], np.float32)
    mask = np.zeros(X.shape[1], np.float32)
    for name, block in encoder.groups:
        if name in ranges:
            low[block], high[block] = ranges[name]
            mask[block] = 1.0
    return model, X[:1000], y[:1000], low, high, mask


@pytest.mark.parametrize("eps", [0.25, 0.5])
def test_robustness__art_pgd_equals_plain_torch_pgd(tabular_model, eps):
    from art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_pytorch import (
        ProjectedGradientDescentPyTorch,
    )
    from art.attacks.evasion import ProjectedGradientDescent

    model, X, y, low, high, mask = tabular_model
    classifier = art_classifier(model, X.shape[1:], 2, (low, high))
    assert isinstance(ProjectedGradientDescent(classifier)._attack, ProjectedGradientDescentPyTorch)
    steps, rel, restarts = 10, 0.25, 2
    x_art = attack_inputs(classifier, X, y, "pgd", eps, mask=mask, steps=steps, rel_step_size=rel,
                          random_restarts=restarts, batch_size=len(X), seed=SEED)
    x_ref = torch_pgd(model, X, y, eps, rel * eps, steps, restarts, mask, low, high, SEED)
    with torch.no_grad():
        clean = (model(torch.as_tensor(X)).argmax(1).numpy() == y).mean()
        art_acc = (model(torch.as_tensor(x_art)).argmax(1).numpy() == y).mean()
        ref_acc = (model(torch.as_tensor(x_ref)).argmax(1).numpy() == y).mean()
    assert clean - ref_acc > 0.03, "the attack must bite for the comparison to mean something"
    assert abs(art_acc - ref_acc) <= 0.01, (art_acc, ref_acc)
    assert np.all(np.abs(x_art - X) <= eps + 1e-5)
    assert np.all(x_art >= low - 1e-6) and np.all(x_art <= high + 1e-6)


@pytest.fixture(scope="module")
def adult_context(adult_csvs, tmp_path_factory):
    """The govssl trainer on 4,000 Adult rows; education-num (numeric) is a sensitive attribute."""
    import yaml

    from tests.conftest import fast_plan_data

    folder = tmp_path_factory.mktemp("robustness")
    data = fast_plan_data(*adult_csvs)
    data["dataset"]["sensitive"] = ["sex", "education-num"]
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return cached_context("robustness-adult", path, folder)


def test_robustness__attacks_never_change_immutable_features(adult_context):
    data = adult_context.dataset
    space = input_space(data, ["age"], sensitive_immutable=True)
    assert "education-num" in space.immutable and "age" in space.immutable
    assert set(space.mutable) == {"capital-gain", "capital-loss", "hours-per-week"}
    X, y = data.X_test[:500], data.y_test[:500]
    classifier = art_classifier(adult_context.train.model, X.shape[1:], 2, (space.clip_min, space.clip_max))
    frozen = [block.start for name, block in data.encoder.groups if name not in space.mutable]
    frozen += [i for name, block in data.encoder.groups if name in data.categorical for i in range(block.start, block.stop)]
    for attack in ("fgsm", "pgd"):
        X_adv = attack_inputs(classifier, X, y, attack, 0.5, mask=space.mask, steps=5, rel_step_size=0.25,
                              random_restarts=1, batch_size=256, seed=SEED)
        assert np.array_equal(X_adv[:, frozen], X[:, frozen]), attack
        assert (X_adv != X).any(axis=0).sum() >= 2, "the mutable features must move"
        assert np.all(X_adv >= space.clip_min - 1e-6) and np.all(X_adv <= space.clip_max + 1e-6)


def test_robustness__sensitive_numeric_feature_moves_only_when_allowed(adult_context):
    space = input_space(adult_context.dataset, [], sensitive_immutable=False)
    assert "education-num" in space.mutable


def test_robustness__unknown_immutable_feature_is_a_config_error(adult_context):
    with pytest.raises(ConfigError, match="nonexistent"):
        input_space(adult_context.dataset, ["nonexistent"], sensitive_immutable=True)


def test_robustness__measures_each_eps_group_and_draws_chart(adult_context):
    check = RobustnessCheck(eps=[0.1, 0.5], max_rows=400, immutable=["age"], pgd_steps=5, apgd_steps=20)
    result = check.run(adult_context)
    assert result.status == "measured", result.reason
    by = {(m.metric, m.subject): m for m in result.measurements}
    for eps in (0.1, 0.5):
        worst = by[("robust_accuracy", f"eps={eps:g}")]
        assert worst.n == 400 and worst.ci_low <= worst.value <= worst.ci_high
        assert worst.details["eps"] == eps and "age" in worst.details["immutable_features"]
        assert set(worst.details["eps_in_feature_units"]) == {"capital-gain", "capital-loss",
                                                              "hours-per-week"}
        assert ("robust_accuracy_gap", f"eps={eps:g} sex") in by
        female = by[("group_robust_accuracy", f"eps={eps:g} sex=Female")]
        assert female.details["group"] == {"sex": "Female"} and female.details["attribute"] == "sex"
        for attack in ("fgsm", "pgd", "apgd"):
            subject = f"{attack} eps={eps:g}"
            m = by[("attack_robust_accuracy", subject)]
            assert m.n == 400 and worst.value <= m.value
            assert worst.details["per_attack_accuracy"][attack] == m.value
            assert by[("immutable_features_changed", subject)].value == 0
    assert by[("robust_accuracy", "eps=0.5")].value <= by[("clean_accuracy", "")].value
    half = by[("half_accuracy_eps", "")]
    assert half.details["eps_grid"] == [0.1, 0.5]
    assert np.isnan(half.value) == ("not reached" in half.details["result"])
    svg = (adult_context.out_dir / "robustness.svg").read_text()
    root = ElementTree.fromstring(svg.encode())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # matplotlib draws text as paths and keeps each text as a comment: panels, overall and group lines
    for text in ("worst of attacks", "PGD", "FGSM", "APGD", "all test rows", "sex=Female (n=", "sex=Male (n="):
        assert f"<!-- {text}" in svg, text


def _plain_logits(model, X):
    """The classifier's logits from its weights, in plain PyTorch (no ART, no govssl helper)."""
    with torch.no_grad():
        return model(torch.as_tensor(X, dtype=torch.float32))


def test_robustness__worst_case_equals_plain_torch_recount(adult_context):
    """Every attack's adversarial examples are re-checked in plain PyTorch from the model's
    weights: each lies in the threat model (eps ball, mask, training range), a row counted robust
    is classified correctly clean and under every attack's example, a row counted non-robust is
    misclassified by at least one, and robust accuracy equals that recount exactly."""
    ctx = adult_context
    check = RobustnessCheck(eps=[0.1, 0.25, 0.5], max_rows=400, pgd_steps=5, apgd_steps=20)
    result = check.run(ctx)
    assert result.status == "measured", result.reason
    by = {(m.metric, m.subject): m for m in result.measurements}
    data, model = ctx.dataset, ctx.train.model
    space = input_space(data, [], sensitive_immutable=True)
    rows = np.sort(np.random.default_rng(ctx.seed + 17).choice(len(data.y_test), size=400, replace=False))
    X, y = data.X_test[rows].astype(np.float32), np.asarray(data.y_test[rows])
    classifier = art_classifier(model, X.shape[1:], 2, (space.clip_min, space.clip_max))
    clean = _plain_logits(model, X).argmax(1).numpy() == y
    assert by[("clean_accuracy", "")].value == clean.mean()
    moving = space.mask > 0
    for i, eps in enumerate((0.1, 0.25, 0.5)):
        adversarial = check.attack_all(classifier, X, y, eps, i, space.mask, ctx.seed)
        correct = {}
        for attack, X_adv in adversarial.items():
            assert np.all(np.abs(X_adv - X) <= eps + 1e-5), attack
            assert np.array_equal(X_adv[:, ~moving], X[:, ~moving]), attack
            assert np.all(X_adv >= space.clip_min - 1e-6) and np.all(X_adv <= space.clip_max + 1e-6), attack
            correct[attack] = _plain_logits(model, X_adv).argmax(1).numpy() == y
            assert by[("attack_robust_accuracy", f"{attack} eps={eps:g}")].value == correct[attack].mean()
        # robust: correct clean and under every attack's example; non-robust: some example misclassified
        robust = clean & np.logical_and.reduce(list(correct.values()))
        measured = by[("robust_accuracy", f"eps={eps:g}")]
        assert measured.value == robust.mean() and int(round(measured.value * measured.n)) == int(robust.sum())
    assert by[("robust_accuracy", "eps=0.5")].value < clean.mean(), "the attacks must bite"


def test_robustness__art_fgsm_equals_plain_torch_fgsm(tabular_model):
    model, X, y, low, high, mask = tabular_model
    classifier = art_classifier(model, X.shape[1:], 2, (low, high))
    eps = 0.25
    x_art = attack_inputs(classifier, X, y, "fgsm", eps, mask=mask, steps=1, rel_step_size=1.0,
                          random_restarts=0, batch_size=len(X), seed=SEED)
    x = torch.as_tensor(X).requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(x), torch.as_tensor(y), reduction="sum"), x)
    x_ref = np.clip(X + eps * np.sign(grad.numpy()) * mask, low, high)
    assert np.allclose(x_art, x_ref, atol=1e-6)


def test_robustness__apgd_keeps_immutable_features_and_bites(tabular_model):
    model, X, y, low, high, mask = tabular_model
    mask = mask.copy()
    mask[0] = 0.0  # the first numeric feature (age) immutable
    classifier = art_classifier(model, X.shape[1:], 2, (low, high))
    x_adv = attack_inputs(classifier, X, y, "apgd", 0.5, mask=mask, steps=1, rel_step_size=1.0, random_restarts=0,
                          batch_size=len(X), seed=SEED, apgd_steps=20)
    assert np.array_equal(x_adv[:, mask == 0], X[:, mask == 0])
    assert np.all(np.abs(x_adv - X) <= 0.5 + 1e-5)
    clean, adv = (_plain_logits(model, a).argmax(1).numpy() == y for a in (X, x_adv))
    assert adv.mean() < clean.mean() - 0.03


def test_half_accuracy_eps__interpolates_or_reports_not_reached():
    from govssl.checks.robustness import half_accuracy_eps

    assert half_accuracy_eps(0.8, [(0.2, 0.2), (0.1, 0.6)]) == pytest.approx(0.15)
    assert half_accuracy_eps(0.8, [(0.1, 0.4)]) == pytest.approx(0.1)
    assert half_accuracy_eps(0.8, [(0.1, 0.7), (0.2, 0.5)]) != half_accuracy_eps(0.8, [(0.1, 0.7), (0.2, 0.4)])
    assert np.isnan(half_accuracy_eps(0.8, [(0.1, 0.7), (0.2, 0.41)]))


def test_eps_in_feature_units__inverts_the_encoder(adult_context):
    """The stated size of eps in a feature's units moves the encoded feature by exactly eps."""
    import pandas as pd

    from govssl.checks.robustness import eps_in_feature_units

    data = adult_context.dataset
    space = input_space(data, [], sensitive_immutable=True)
    units = eps_in_feature_units(data, space, 0.25)
    encoder = data.encoder
    column = {c.name: c for c in encoder.numeric}
    for name in space.mutable:
        c = column[name]
        block = dict(encoder.groups)[name].start
        frame = pd.DataFrame({n: [1.0, 1.0] for n in encoder.numeric_names} |
                             {n: ["x", "x"] for n in encoder.categorical_names})
        if c.log:
            assert units[name]["statement"].startswith(f"0.25 SD = (1 + {name}) multiplied or divided by ")
            frame[name] = [100.0, 101.0 * units[name]["factor"] - 1]
        else:
            assert units[name]["statement"] == f"0.25 SD = {units[name]['change']:.3g} of {name} (SD {c.std:.3g})"
            frame[name] = [30.0, 30.0 + units[name]["change"]]
        encoded = encoder.transform(frame)[:, block]
        assert encoded[1] - encoded[0] == pytest.approx(0.25, rel=1e-4), (name, units[name])


def test_robustness__unknown_attack_is_refused_with_its_name():
    # refused by the parameter schema, so a plan naming it stops before training
    from govssl.checks.base import CheckParamsError

    with pytest.raises(CheckParamsError) as info:
        RobustnessCheck(attacks=["cw"], max_rows=50)
    assert str(info.value) == "checks.robustness.attacks[0]: Input should be 'fgsm', 'pgd' or 'apgd'; got 'cw'"


def test_robustness_chart__draws_the_policys_limit_on_robust_accuracy():
    from govssl.checks._art import line_chart_svg
    from govssl.checks.robustness import policy_limits
    from govssl.policy import builtin_policy_path, load_policy

    limits = policy_limits(load_policy(builtin_policy_path("default")))
    assert limits == [(0.1, 0.7, "policy robustness-pgd: min 0.7 (ci_low) at eps=0.1")]
    assert policy_limits(None) == []
    curves = {"worst of attacks": {"all test rows": [(0.0, 0.84), (0.1, 0.81)]}}
    with_limit = line_chart_svg("t", "eps", "accuracy", curves, thresholds=limits)
    assert "<!-- policy robustness-pgd: min 0.7 (ci_low) at eps=0.1 -->" in with_limit
    assert "policy robustness-pgd" not in line_chart_svg("t", "eps", "accuracy", curves)
