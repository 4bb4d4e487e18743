"""SSL objectives against hand computations: NT-Xent, VIME's loss and mask, augmentations, rotations."""

from __future__ import annotations

import math

import pytest
import torch

from govssl.train._pretrain import _rotate
from govssl.train.augment import augment
from govssl.train.simclr import NTXentLoss
from govssl.train.vime import VimeCorruption, VimeLoss


def test_ntxent_loss__equals_hand_computation():
    torch.manual_seed(0)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    tau = 0.5
    z = torch.cat([a, b])
    z = z / z.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(8):
        partner = (i + 4) % 8
        logits = {j: float(z[i] @ z[j]) / tau for j in range(8) if j != i}
        total += -logits[partner] + math.log(sum(math.exp(v) for v in logits.values()))
    assert float(NTXentLoss(tau)(a, b)) == pytest.approx(total / 8, rel=1e-5)


def test_ntxent_loss__rejects_a_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(-1.0)


def test_vime_loss__equals_hand_computation_per_example_and_mean():
    output = torch.tensor([[0.0, 2.0, 1.0, -1.0], [-1.0, 0.5, 0.0, 3.0]])  # [mask logits | features]
    target = torch.tensor([[1.0, 0.0, 0.5, -1.0], [0.0, 1.0, 0.0, 1.0]])
    alpha = 2.0

    def bce(logit, t):
        p = 1 / (1 + math.exp(-logit))
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    expected = []
    for o, t in zip(output.tolist(), target.tolist()):
        mask = (bce(o[0], t[0]) + bce(o[1], t[1])) / 2
        feat = ((o[2] - t[2]) ** 2 + (o[3] - t[3]) ** 2) / 2
        expected.append(mask + alpha * feat)
    per_example = VimeLoss(alpha, reduction="none")(output, target)
    assert per_example.tolist() == pytest.approx(expected, rel=1e-6)
    assert float(VimeLoss(alpha)(output, target)) == pytest.approx(sum(expected) / 2, rel=1e-6)


def test_vime_corruption__mask_marks_exactly_the_changed_values_at_the_rate():
    gen = torch.Generator().manual_seed(0)
    X = torch.cat([torch.arange(100, dtype=torch.float32)[:, None],
                   torch.nn.functional.one_hot(torch.arange(100) % 4, 4).float()], dim=1)
    corrupt = VimeCorruption(X, [slice(0, 1), slice(1, 5)], rate=0.3)
    anchor = torch.tensor([[500.0, 0.0, 0.0, 0.0, 0.0]] * 4000)  # no training row has these values
    out, mask = corrupt.with_mask(anchor, gen)
    assert torch.equal(mask.bool(), out != anchor)
    assert abs(float(mask[:, 0].mean()) - 0.3) < 0.03


def test_augment__same_generator_same_views_in_range_and_shape():
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    a = augment(x, torch.Generator().manual_seed(7))
    b = augment(x, torch.Generator().manual_seed(7))
    c = augment(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1


def test_augment__identity_settings_give_the_image_back():
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    same = augment(x, torch.Generator().manual_seed(0), crop_scale=(1.0, 1.0), max_degrees=0.0,
                   max_shift=0.0, noise_std=0.0, cutout=0.0)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)


def test_rotate__target_is_the_number_of_quarter_turns():
    x = torch.arange(2 * 9, dtype=torch.float32).reshape(2, 1, 3, 3)
    x = x.repeat(50, 1, 1, 1)
    turned, k = _rotate(x, torch.Generator().manual_seed(0))
    for i in range(len(x)):
        assert torch.equal(turned[i], torch.rot90(x[i], int(k[i]), dims=(1, 2)))
    assert set(k.tolist()) == {0, 1, 2, 3}


def _table(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, list[slice], list[bool]]:
    gen = torch.Generator().manual_seed(seed)
    numeric = torch.randn(n, 2, generator=gen) * 3 + 10  # far from the standard normal
    levels = torch.randint(0, 3, (n,), generator=gen)
    X = torch.cat([numeric, torch.nn.functional.one_hot(levels, 3).float()], dim=1)
    return X, [slice(0, 1), slice(1, 2), slice(2, 5)], [False, False, True]


def test_vime_corruption__independent_values_read_no_other_row():
    X, groups, categorical = _table()
    other = X.clone()
    other[10:] = other[10:].flip(0) + 5  # every row but the batch's changes
    batch = X[:10]
    for independent, same in ((True, True), (False, False)):
        a = VimeCorruption(X, groups, 0.5, categorical, independent=independent).with_mask(batch, torch.Generator().manual_seed(1))
        b = VimeCorruption(other, groups, 0.5, categorical, independent=independent).with_mask(batch, torch.Generator().manual_seed(1))
        assert (torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])) == same


def test_vime_corruption__independent_values_are_standard_normal_and_uniform_levels():
    X, groups, categorical = _table()
    corrupt = VimeCorruption(X, groups, 0.999, categorical, independent=True)
    out, _ = corrupt.with_mask(X[:1].expand(20000, -1), torch.Generator().manual_seed(2))
    assert abs(float(out[:, 0].mean())) < 0.03 and abs(float(out[:, 0].std()) - 1) < 0.03
    assert torch.equal(out[:, 2:].sum(1), torch.ones(20000))  # still one level per row
    shares = out[:, 2:].mean(0)
    assert float((shares - 1 / 3).abs().max()) < 0.02
    with pytest.raises(ValueError, match="kind"):
        VimeCorruption(X, groups, 0.3, None, independent=True)
