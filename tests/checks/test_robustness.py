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
    check = RobustnessCheck(eps=[0.1, 0.5], max_rows=400, immutable=["age"], pgd_steps=5)
    result = check.run(adult_context)
    assert result.status == "measured", result.reason
    by = {(m.metric, m.subject): m for m in result.measurements}
    for attack in ("fgsm", "pgd"):
        for eps in (0.1, 0.5):
            subject = f"{attack} eps={eps:g}"
            m = by[("robust_accuracy", subject)]
            assert m.n == 400 and m.ci_low <= m.value <= m.ci_high
            assert m.details["eps"] == eps and "age" in m.details["immutable_features"]
            assert by[("immutable_features_changed", subject)].value == 0
            assert ("robust_accuracy_gap", f"{subject} sex") in by
            female = by[("group_robust_accuracy", f"{subject} sex=Female")]
            assert female.details["group"] == {"sex": "Female"} and female.details["attribute"] == "sex"
    assert by[("robust_accuracy", "pgd eps=0.5")].value <= by[("clean_accuracy", "")].value
    svg = (adult_context.out_dir / "robustness.svg").read_text()
    root = ElementTree.fromstring(svg.encode())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # matplotlib draws text as paths and keeps each text as a comment: panels, overall and group lines
    for text in ("PGD", "FGSM", "all test rows", "sex=Female (n=", "sex=Male (n="):
        assert f"<!-- {text}" in svg, text


def test_robustness__unknown_attack_is_refused_with_its_name():
    # refused by the parameter schema, so a plan naming it stops before training
    from govssl.checks.base import CheckParamsError

    with pytest.raises(CheckParamsError) as info:
        RobustnessCheck(attacks=["cw"], max_rows=50)
    assert str(info.value) == "checks.robustness.attacks[0]: Input should be 'fgsm' or 'pgd'; got 'cw'"
