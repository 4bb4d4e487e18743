"""The private path against plain training, and the noise it adds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from govssl.plan import DPSpec
from govssl.train._dp import make_private, quiet_opacus


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2))


def _train(model, optimizer, criterion, batches, backward=None):
    for xb, yb in batches:
        loss = criterion(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        (backward or torch.Tensor.backward)(loss)
        optimizer.step()
    return model


def _train_private(private, batches):
    return _train(private.model, private.optimizer, private.criterion, batches, private.backward)


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(512, 10, generator=gen)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    batches = [(X[i : i + 128], y[i : i + 128]) for i in range(0, 512, 128)]
    return X, y, batches


def _private(model, optimizer, n: int, noise: float, clip: float):
    quiet_opacus()
    spec = DPSpec(enabled=True, noise_multiplier=noise, max_grad_norm=clip)
    return make_private(model, optimizer, nn.CrossEntropyLoss(), n, 128, 1, spec, torch.Generator().manual_seed(0))


def _with_conv(model: nn.Sequential) -> nn.Sequential:
    """``model`` after a 1-D convolution, which the one-pass clipper does not handle, so the
    private path falls back to Opacus's ghost clipping."""
    conv = nn.Conv1d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    return nn.Sequential(nn.Unflatten(1, (1, 10)), conv, nn.Flatten(), *model)


@pytest.mark.parametrize("kind", ["linear", "opacus"])
def test_private_path__without_noise_and_clipping_equals_plain_training(data, kind):
    X, y, batches = data
    build = _mlp if kind == "linear" else lambda: _with_conv(_mlp())
    plain = build()
    _train(plain, torch.optim.Adam(plain.parameters(), lr=1e-2), nn.CrossEntropyLoss(), batches)
    model = build()
    private = _private(model, torch.optim.Adam(model.parameters(), lr=1e-2), len(X), noise=0.0, clip=1e9)
    assert ("one backward pass" in private.clipping) == (kind == "linear")
    _train_private(private, batches)
    for a, b in zip(plain.parameters(), private.trained_module().parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_private_path__clipping_changes_the_update(data):
    X, y, batches = data
    plain = _mlp()
    _train(plain, torch.optim.SGD(plain.parameters(), lr=1.0), nn.CrossEntropyLoss(), batches[:1])
    model = _mlp()
    private = _private(model, torch.optim.SGD(model.parameters(), lr=1.0), len(X), noise=0.0, clip=1e-3)
    _train_private(private, batches[:1])
    start = _mlp()
    # each example's gradient is clipped to norm 1e-3, so the whole step moves at most that far
    step = torch.sqrt(sum(((p.detach() - q.detach()) ** 2).sum() for p, q in zip(model.parameters(), start.parameters())))
    assert float(step) <= 1e-3 * (1 + 1e-4)
    plain_step = torch.sqrt(sum(((p.detach() - q.detach()) ** 2).sum() for p, q in zip(plain.parameters(), start.parameters())))
    assert float(plain_step) > 10 * float(step)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_calibrate_phases__composed_epsilon_meets_the_target_with_the_smallest_noise(accountant):
    from opacus.accountants import create_accountant

    from govssl.train._dp import calibrate_phases, poisson_schedule

    spec = DPSpec(enabled=True, target_epsilon=3.0, delta=1e-5, accountant=accountant, pretrain_share=0.4)
    pre, fine = poisson_schedule(20000, 500, 2), poisson_schedule(2000, 250, 10)
    noise_pre, noise_fine = calibrate_phases(spec, [pre, fine])

    def epsilon(history):
        acc = create_accountant(mechanism=accountant)
        acc.history = history
        return acc.get_epsilon(delta=1e-5)

    assert epsilon([(noise_pre, *pre)]) <= 0.4 * 3.0
    composed = epsilon([(noise_pre, *pre), (noise_fine, *fine)])
    assert 3.0 - 0.05 <= composed <= 3.0
    # a little less noise in fine-tuning would overspend
    assert epsilon([(noise_pre, *pre), (noise_fine * 0.97, *fine)]) > 3.0


def test_calibrate_phases__a_share_below_opacus_orders_floor_is_reached_and_the_total_is_opacus_figure():
    # At delta 1e-5 Opacus's RDP orders (up to 63) never convert to an epsilon below about 0.1:
    # the temperature's 10% of epsilon 1 is calibrated with higher orders, and the composed
    # epsilon by Opacus's own accountant still meets the target.
    import math

    from opacus.accountants import create_accountant

    from govssl.train._dp import _WIDE_ORDERS, calibrate_phases, poisson_schedule

    spec = DPSpec(enabled=True, target_epsilon=1.0, delta=1e-5, accountant="rdp")
    fine, cal = poisson_schedule(2000, 250, 10), poisson_schedule(500, 500, 60)
    noise_fine, noise_cal = calibrate_phases(spec, [fine, cal], [None, 0.1])

    def epsilon(history, alphas=None):
        acc = create_accountant(mechanism="rdp")
        acc.history = history
        return acc.get_epsilon(delta=1e-5, alphas=alphas)

    assert epsilon([(1e5, *cal)]) > 0.1 - 1e-9  # Opacus's own orders cannot reach the share at any noise
    assert epsilon([(noise_cal, *cal)], _WIDE_ORDERS) <= 0.1
    assert math.isfinite(noise_fine) and 1.0 - 0.05 <= epsilon([(noise_fine, *fine), (noise_cal, *cal)]) <= 1.0
