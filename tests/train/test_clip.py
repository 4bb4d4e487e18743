"""One-pass per-example clipping against two references: a loop over the examples in plain
PyTorch, and Opacus's per-sample hooks; Poisson batches against Opacus's sampler."""

from __future__ import annotations

import pytest
import numpy as np
import torch
from torch import nn

from govssl.plan import DPSpec
from govssl.train._clip import OnePassClipper, PoissonBatches
from govssl.train._dp import make_private, quiet_opacus
from govssl.train.vime import VimeCorruption, VimeHeads, VimeLoss


def _mlp(bias: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32, bias=bias), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 3))


def _vime_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), VimeHeads(32, 12))


def _batch(n: int = 40):
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(n, 12, generator=gen) * torch.linspace(0.1, 5, n)[:, None]  # a spread of norms
    return X, torch.randint(0, 3, (n,), generator=gen)


def _reference(model, loss_fn, X, targets, clip):
    """Sum of clipped per-example gradients, one example at a time."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    norms = []
    for i in range(len(X)):
        grads = torch.autograd.grad(loss_fn(model(X[i : i + 1]), targets[i : i + 1]), params)
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
        norms.append(float(norm))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        for t, g in zip(total, grads):
            t += factor * g
    return total, torch.tensor(norms)


def _cnn() -> nn.Sequential:
    """govssl's image encoder shape: a same-size convolution, a strided one, then linear layers.
    The first layer's norm comes from per-example gradients, the second's from Gram matrices."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 3 * 3, 16), nn.ReLU(), nn.Linear(16, 3))


def _images(n: int = 24):
    gen = torch.Generator().manual_seed(5)
    X = torch.rand(n, 1, 6, 6, generator=gen) * torch.linspace(0.1, 4, n)[:, None, None, None]
    return X, torch.randint(0, 3, (n,), generator=gen)


def _clipped(model, loss_fn, X, targets, clip):
    clipper = OnePassClipper(model, clip)
    norms = clipper.backward(loss_fn(model(X), targets))
    clipper.remove()
    return [p.grad for p in model.parameters() if p.requires_grad], norms


def _vime_targets(X):
    corrupted, mask = VimeCorruption(X, [slice(0, 4), *(slice(i, i + 1) for i in range(4, 12))], 0.3).with_mask(X, torch.Generator().manual_seed(0))
    return corrupted, torch.cat([mask, X], dim=1)


@pytest.mark.parametrize("case", ["mlp", "mlp_no_bias", "frozen_first_layer", "vime", "cnn", "cnn_frozen_convs"])
def test_one_pass_clipper__equals_a_loop_over_examples(case):
    X, y = _batch()
    if case.startswith("cnn"):
        model, (inputs, targets) = _cnn(), _images()
        per_example, mean = nn.CrossEntropyLoss(reduction="none"), nn.CrossEntropyLoss()
    elif case == "vime":
        model, inputs, targets = _vime_net(), *_vime_targets(X)
        per_example, mean = VimeLoss(2.0, reduction="none"), VimeLoss(2.0)
    else:
        model, inputs, targets = _mlp(bias=case != "mlp_no_bias"), X, y
        per_example, mean = nn.CrossEntropyLoss(reduction="none"), nn.CrossEntropyLoss()
    if case == "frozen_first_layer":
        model[0].requires_grad_(False)
    if case == "cnn_frozen_convs":  # a linear probe on a CNN
        model[0].requires_grad_(False)
        model[2].requires_grad_(False)
    _, norms = _reference(model, mean, inputs, targets, 1e9)
    clip = float(norms.median())  # about half the examples are clipped
    expected, expected_norms = _reference(model, mean, inputs, targets, clip)
    got, got_norms = _clipped(model, per_example, inputs, targets, clip)
    assert 0.3 < float((expected_norms > clip).float().mean()) < 0.7
    torch.testing.assert_close(got_norms.double(), expected_norms.double(), rtol=1e-4, atol=1e-6)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_one_pass_clipper__equals_opacus_per_sample_hooks(kind):
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    quiet_opacus()
    build = _mlp if kind == "mlp" else _cnn
    X, y = _batch() if kind == "mlp" else _images()
    clip = 0.5
    reference = build()
    start = [p.detach().clone() for p in reference.parameters()]
    engine = PrivacyEngine()
    module, optimizer, _ = engine.make_private(
        module=reference, optimizer=torch.optim.SGD(reference.parameters(), lr=1.0), noise_multiplier=0.0,
        max_grad_norm=clip, loss_reduction="sum", poisson_sampling=False, grad_sample_mode="hooks",
        data_loader=DataLoader(TensorDataset(X, y), batch_size=len(X)),
    )
    nn.CrossEntropyLoss(reduction="sum")(module(X), y).backward()
    optimizer.step()
    opacus_sums = [s - p.detach() for s, p in zip(start, module._module.parameters())]  # lr 1: the step is the sum
    got, _ = _clipped(build(), nn.CrossEntropyLoss(reduction="none"), X, y, clip)
    for g, e in zip(got, opacus_sums):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def test_poisson_batches__draw_the_same_rows_as_opacus():
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    ours = list(PoissonBatches(1000, 0.05, 30, torch.Generator().manual_seed(7)))
    theirs = list(UniformWithReplacementSampler(num_samples=1000, sample_rate=0.05, steps=30,
                                                generator=torch.Generator().manual_seed(7)))
    assert len(ours) == 30
    assert [b.tolist() for b in ours] == theirs


def test_one_pass_clipper__refuses_what_it_cannot_clip():
    conv1d = nn.Sequential(nn.Conv1d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6, 2))
    assert "Conv1d" in OnePassClipper.unsupported(conv1d)
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2))
    assert "Conv2d" in OnePassClipper.unsupported(grouped)
    assert "Conv2d" in OnePassClipper.unsupported(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"))
    assert "batch norm" in OnePassClipper.unsupported(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, affine=False)))
    with pytest.raises(ValueError, match="Conv1d"):
        OnePassClipper(conv1d, 1.0)
    assert OnePassClipper.unsupported(_cnn()) is None
    # a frozen layer of any kind under trained linear layers is fine (a linear probe)
    conv1d[0].requires_grad_(False)
    assert OnePassClipper.unsupported(conv1d) is None


def test_one_pass_clipper__a_layer_used_twice_is_an_error_not_a_wrong_norm():
    layer = nn.Linear(4, 4)
    clipper = OnePassClipper(layer, 1.0)
    x = torch.randn(8, 4)
    with pytest.raises(RuntimeError, match="called 2 time"):
        clipper.backward(layer(layer(x)).sum(1))
    # the next batch starts clean
    clipper.backward(layer(x).sum(1))
    assert layer.weight.grad is not None


@pytest.mark.parametrize("kind", ["linear", "opacus"])
def test_private_step__an_empty_batch_still_adds_noise_and_counts(kind):
    quiet_opacus()
    model = _mlp() if kind == "linear" else nn.Sequential(nn.Unflatten(1, (1, 12)), nn.Conv1d(1, 1, 1), nn.Flatten(), _mlp())
    before = [p.detach().clone() for p in model.parameters()]
    spec = DPSpec(enabled=True, noise_multiplier=1.0, max_grad_norm=1.0)
    private = make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), 100, 10, 1,
                           spec, torch.Generator().manual_seed(0))
    assert ("one backward pass" in private.clipping) == (kind == "linear")
    private.empty_step()
    assert private.engine.accountant.history == [(1.0, 0.1, 1)]
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_poisson_batches__large_tables_draw_size_then_subset_with_the_row_by_row_distribution():
    """Past SUBSET_MIN_ROWS a batch is a Binomial size and then that many distinct rows: each row
    joins each batch with probability sample_rate, independently of the others (batch sizes with
    the Binomial mean and variance; per-row counts with the Binomial spread, no row favoured; the
    rows of a batch distinct and sorted)."""
    from scipy import stats

    from govssl.train._clip import SUBSET_MIN_ROWS

    n, rate, steps = SUBSET_MIN_ROWS + 20_000, 0.004, 3_000
    batches = PoissonBatches(n, rate, steps, torch.Generator().manual_seed(11))
    assert batches.by_subset and not PoissonBatches(SUBSET_MIN_ROWS, rate, 1, torch.Generator()).by_subset
    counts = torch.zeros(n, dtype=torch.long)
    sizes = []
    for batch in batches:
        assert torch.equal(batch, batch.unique())  # distinct, sorted
        counts[batch] += 1
        sizes.append(len(batch))
    sizes = np.array(sizes, dtype=np.float64)
    mean, var = n * rate, n * rate * (1 - rate)
    assert abs(sizes.mean() - mean) < 4 * np.sqrt(var / steps)
    assert 0.9 < sizes.var(ddof=1) / var < 1.1
    # per-row inclusion counts: Binomial(steps, rate), the same for every row
    per_row = counts.numpy()
    assert abs(per_row.mean() - steps * rate) < 0.01 * steps * rate
    assert 0.95 < per_row.var(ddof=1) / (steps * rate * (1 - rate)) < 1.05
    halves = [per_row[: n // 2].sum(), per_row[n // 2:].sum()]  # no region of the table favoured
    assert stats.binomtest(int(halves[0]), int(sum(halves)), 0.5).pvalue > 0.001
    again = [b.tolist() for b in PoissonBatches(n, rate, 3, torch.Generator().manual_seed(11))]
    assert again == [b.tolist() for b in list(PoissonBatches(n, rate, 3, torch.Generator().manual_seed(11)))]
