"""The one-run canary audit (Steinke, Nasr and Jagielski 2023): the bound against an independent
exact computation, the guesses, and (slow) the audit catching DP with its noise switched off."""

from __future__ import annotations

import math

import numpy as np
import pytest

from govssl.checks._canary import audit_scores, epsilon_lower_bound, guess_counts, p_value

CASES = [  # m, r, v, eps, delta
    (1000, 200, 180, 1.0, 1e-5),
    (1000, 200, 200, 3.0, 1e-5),
    (1000, 1000, 620, 0.5, 1e-5),
    (500, 50, 45, 2.0, 0.0),
    (100, 10, 7, 0.2, 1e-3),
    (2000, 400, 399, 4.0, 1e-6),
]


def _reference_p_value(m, r, v, eps, delta):
    """Theorem 3 of Steinke et al. written out by exact summation (no scipy):
    P[W >= v] <= f(v) + 2 m delta max_{1<=i<=v} (f(v - i) - f(v)) / i, f the Binomial(r, q) tail."""
    q = math.exp(eps) / (1 + math.exp(eps))
    pmf = [math.comb(r, j) * q**j * (1 - q) ** (r - j) for j in range(r + 1)]

    def tail(u):
        return sum(pmf[max(u, 0):])

    extra = max(((tail(v - i) - tail(v)) / i for i in range(1, v + 1)), default=0.0)
    return min(1.0, tail(v) + 2 * m * delta * extra)


@pytest.mark.parametrize("m, r, v, eps, delta", CASES)
def test_p_value__equals_exact_summation(m, r, v, eps, delta):
    assert p_value(m, r, v, eps, delta) == pytest.approx(_reference_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("m, r, v, eps, delta", CASES)
def test_epsilon_lower_bound__is_where_the_exact_p_value_crosses_beta(m, r, v, eps, delta):
    beta = 0.05
    bound = epsilon_lower_bound(m, r, v, delta, beta)
    if bound == 0.0:
        assert _reference_p_value(m, r, v, 0.0, delta) >= beta
        return
    assert _reference_p_value(m, r, v, bound, delta) < beta  # the bound is refuted at level beta
    assert _reference_p_value(m, r, v, bound + 1e-3, delta) >= beta  # and nothing much above it is


def test_epsilon_lower_bound__known_values():
    # all 200 guesses right, pure DP: q^200 = beta gives q = 0.05^(1/200), eps = log(q / (1 - q))
    q = 0.05 ** (1 / 200)
    assert epsilon_lower_bound(1000, 200, 200, 0.0, 0.05) == pytest.approx(math.log(q / (1 - q)), abs=1e-3)
    assert epsilon_lower_bound(1000, 200, 100, 1e-5, 0.05) == 0.0  # chance accuracy proves nothing


def test_guess_counts__top_in_bottom_out():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    included = np.array([True, False, True, False, True, False])
    assert guess_counts(scores, included, 1) == (2, 2)
    assert guess_counts(scores, included, 2) == (4, 2)  # 5 in (right), 4 in (wrong), 1 out (wrong), 0 out (right)
    assert guess_counts(scores, included, 3) == (6, 4)


def test_audit_scores__perfect_scores_reach_the_ceiling_random_scores_stay_low():
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    perfect = audit_scores(included.astype(float) + rng.random(1000) * 0.1, included, [10, 50, 100, 400], 1e-5, 0.95)
    assert perfect["epsilon"] == pytest.approx(perfect["max_detectable"], abs=1e-3)
    assert perfect["correct"] == perfect["guesses"]
    # Bonferroni: each of 4 tests at 0.05 / 4; the ceiling is that of the largest k, r = 800 all right
    assert perfect["level_per_k"] == pytest.approx(0.0125)
    assert perfect["max_detectable"] == pytest.approx(epsilon_lower_bound(1000, 800, 800, 1e-5, 0.0125), abs=1e-3)
    noise = audit_scores(rng.random(1000), included, [10, 50, 100, 500], 1e-5, 0.95)
    assert noise["epsilon"] < 0.5


def _steps(record):
    """A StepRecord's steps as one (steps, width) tensor."""
    import torch

    return torch.cat(list(record.blocks()))


def _tiny_private(canaries, noise: float, n: int = 40, batch_size: int = 8, epochs: int = 3):
    """A small linear model in a DP phase carrying ``canaries``, trained through the real loop."""
    import torch
    from torch import nn

    from govssl.plan import DPSpec
    from govssl.progress import NullProgress
    from govssl.train._dp import make_private, quiet_opacus
    from govssl.train._loop import train_epochs

    quiet_opacus()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 50), nn.ReLU(), nn.Linear(50, 2))
    X, y = torch.randn(n, 6), torch.randint(0, 2, (n,))
    dp = DPSpec(enabled=True, noise_multiplier=noise, max_grad_norm=0.5)
    private = make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), n, batch_size,
                           epochs, dp, torch.Generator().manual_seed(1), noise_multiplier=noise, canaries=canaries)
    train_epochs(private.optimizer, epochs, lambda: private.batches,
                 lambda idx: private.criterion(private.model(X[idx]), y[idx]),
                 NullProgress(), "test", len(private.batches), private=private)
    return private


def test_gradient_canaries__enter_the_summed_gradient_before_the_noise_like_rows():
    import torch

    from govssl.train._dp import GradientCanaries

    included = np.arange(100) % 3 == 0
    canaries = GradientCanaries(included, seed=5)
    private = _tiny_private(canaries, noise=0.0)
    # the largest weight matrix, distinct coordinates, included canaries as extra rows of the phase
    assert canaries.parameter == "0.weight" and len(set(canaries.coordinates.tolist())) == 100
    n_total = 40 + int(included.sum())
    assert private.optimizer.expected_batch_size == int(n_total / -(-n_total // 8))
    sampled = _steps(canaries.sampled).numpy()
    assert sampled.shape == (len(canaries.privatised), 100) and not sampled[:, ~included].any()
    assert sampled[:, included].any()
    # no noise: the privatised gradient is (real clipped sum + 0.5 x sampled) / expected batch size
    privatised = _steps(canaries.privatised).double().numpy()
    real = _steps(canaries.real).double().numpy()
    np.testing.assert_allclose(privatised * canaries.expected_batch_size, real + 0.5 * sampled, atol=1e-5)
    scores = _canary_scores(canaries)
    np.testing.assert_allclose(scores, 0.5 * sampled.sum(0), atol=1e-4)
    # with noise, Opacus's: each step's canary coordinates carry N(0, (noise x max_grad_norm)^2)
    noisy = GradientCanaries(included, seed=5)
    _tiny_private(noisy, noise=2.0)
    residual = (_steps(noisy.privatised).double().numpy() * noisy.expected_batch_size
                - _steps(noisy.real).double().numpy() - 0.5 * _steps(noisy.sampled).double().numpy())
    assert residual.std() == pytest.approx(2.0 * 0.5, rel=0.05)


def _canary_scores(canaries):
    from govssl.checks._canary import gradient_scores

    return gradient_scores(canaries)


def test_gradient_canaries__refuse_more_canaries_than_coordinates():
    from govssl.train._dp import GradientCanaries

    with pytest.raises(ValueError, match="need 400 distinct coordinates"):
        _tiny_private(GradientCanaries(np.ones(400, dtype=bool), seed=0), noise=1.0)


def test_gradient_canary_room__largest_weight_the_fine_tuning_phase_trains():
    from types import SimpleNamespace

    from torch import nn

    from govssl.checks._canary import gradient_canary_room

    model = nn.Sequential(nn.Linear(80, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))

    def ctx(mode):
        plan = SimpleNamespace(training=SimpleNamespace(finetune=SimpleNamespace(mode=mode)))
        return SimpleNamespace(train=SimpleNamespace(model=model), plan=plan)

    assert gradient_canary_room(ctx("fine_tune")) == (80 * 64, "the largest weight matrix")
    # a linear probe trains the head alone: 128 coordinates, too few for 1,000 canaries
    assert gradient_canary_room(ctx("linear_probe")) == (64 * 2, "the head's weight matrix")


def test_step_record__blocks_hold_every_step_in_order():
    import torch

    from govssl.train._dp import StepRecord

    record = StepRecord(3, torch.float32)
    record.BLOCK = 4
    assert len(record) == 0 and list(record.blocks()) == []
    steps = [torch.tensor([i, -i, 0.5 * i]) for i in range(10)]
    for values in steps:
        record.append(values)
    assert len(record) == 10
    assert torch.equal(_steps(record), torch.stack(steps))
    assert [len(b) for b in record.blocks()] == [4, 4, 2]
