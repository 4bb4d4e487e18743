"""Self-supervised pretraining of the encoder: SCARF, VIME (tables), SimCLR, rotation (images).

Contrastive methods (SCARF, SimCLR) couple the examples of a batch and run without DP only.
Per-example methods (VIME, rotation prediction) run plain or under DP-SGD, where one example's
input and target come from one private row only (so VIME draws its replacement values without
reading other rows).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from govssl.train import _distributed as dist
from govssl.train._loop import batches, train_epochs
from govssl.train.augment import augment
from govssl.train.scarf import InfoNCELoss, ScarfCorruption
from govssl.train.simclr import NTXentLoss
from govssl.train.vime import VimeCorruption, VimeHeads, VimeLoss

__all__ = ["pretrain", "embedding_width"]


def embedding_width(encoder: nn.Sequential) -> int:
    return [m for m in encoder if isinstance(m, nn.Linear)][-1].out_features


def _rotate(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image turned by a random multiple of 90 degrees; the target is that multiple
    (Gidaris, Singh, Komodakis. "Unsupervised Representation Learning by Predicting Image
    Rotations." ICLR 2018). One rotation per image per step, so that a step sees each image once."""
    k = torch.randint(0, 4, (x.shape[0],), generator=generator)
    turned = torch.stack([torch.rot90(x, r, dims=(2, 3)) for r in range(4)])
    return turned[k, torch.arange(x.shape[0])], k


class _PerExample:
    """A per-example objective: a network on top of the encoder, a loss, and (input, target) of a batch."""

    def __init__(self, method: str, encoder: nn.Sequential, X: torch.Tensor, groups, spec, categorical, private: bool):
        width = embedding_width(encoder)
        if method == "vime":
            self.corrupt = VimeCorruption(X, groups, spec.mask_rate, categorical, independent=private)
            self.net = nn.Sequential(*encoder, VimeHeads(width, X.shape[1]))
            self.loss = VimeLoss(spec.alpha)
        else:  # rotation
            self.net = nn.Sequential(*encoder, nn.Linear(width, 4))
            self.loss = nn.CrossEntropyLoss()
        self.method = method

    def example(self, x: torch.Tensor, generator: torch.Generator):
        if self.method == "vime":
            corrupted, mask = self.corrupt.with_mask(x, generator)
            return corrupted, torch.cat([mask, x], dim=1)
        return _rotate(x, generator)


def _contrastive(method: str, encoder, X, groups, spec, seed: int, progress, label: str) -> list[float]:
    width = embedding_width(encoder)
    projector = nn.Sequential(nn.Linear(width, spec.projection_dim), nn.ReLU(), nn.Linear(spec.projection_dim, spec.projection_dim))
    if method == "scarf":
        corrupt = ScarfCorruption(X, groups, spec.corruption_rate)
        loss_fn = InfoNCELoss(spec.temperature)
    else:
        loss_fn = NTXentLoss(spec.temperature)
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(projector.parameters()), lr=spec.lr)
    generator = dist.generator(seed)
    n_batches = (len(X) + spec.batch_size - 1) // spec.batch_size
    epoch_batches = lambda: batches(len(X), spec.batch_size, generator)
    project = None
    if dist.context() is not None:
        # one DDP forward per step over both views (a second call before backward would reduce
        # the gradients twice); each process contrasts the rows of its own batch only
        project = dist.wrap_ddp(nn.Sequential(encoder, projector))
        epoch_batches = dist.ShardedBatches(len(X), spec.batch_size, seed)
        n_batches = len(epoch_batches)

    def batch_loss(idx):
        x = X[idx]
        a, b = (x, corrupt(x, generator)) if method == "scarf" else (augment(x, generator), augment(x, generator))
        if project is not None:
            z = project(torch.cat([a, b]))
            return loss_fn(z[: len(a)], z[len(a):])
        return loss_fn(projector(encoder(a)), projector(encoder(b)))

    encoder.train()
    return train_epochs(optimizer, spec.epochs, epoch_batches, batch_loss, progress, label, n_batches)


def pretrain(method: str, encoder: nn.Sequential, X: torch.Tensor, groups, spec, seed: int, progress,
             dp=None, noise_multiplier: float | None = None, source: str = "private",
             categorical: list[bool] | None = None) -> tuple[list[float], object]:
    """Train ``encoder`` in place on the rows ``X`` without labels; returns (losses per epoch, engine).

    ``groups`` are the column blocks of the table's features and ``categorical`` says which are
    one-hot blocks. Under DP, VIME's replacement values are drawn without reading any row.
    ``engine`` is Opacus's PrivacyEngine when the phase ran under DP (its accountant holds the
    phase's history), else None.
    """
    label = f"pretraining encoder ({method}, {len(X):,} {source} rows, no labels)" + (" (DP-SGD)" if dp else "")
    if method in ("scarf", "simclr"):
        assert dp is None, "contrastive pretraining cannot run under DP (the plan refuses it)"
        return _contrastive(method, encoder, X, groups, spec, seed, progress, label), None

    # A copy is trained so that no Opacus hook stays on the classifier's encoder afterwards.
    objective = _PerExample(method, copy.deepcopy(encoder), X, groups, spec, categorical, private=dp is not None)
    net, loss_fn = objective.net, objective.loss
    optimizer = torch.optim.Adam(net.parameters(), lr=spec.lr)
    generator = dist.generator(seed)
    batch_size = min(spec.batch_size, len(X))
    private = None
    if dp is not None:
        from govssl.train._dp import make_private, quiet_opacus

        quiet_opacus()
        private = make_private(net, optimizer, loss_fn, len(X), batch_size, spec.epochs, dp, generator,
                               noise_multiplier=noise_multiplier)
        net, optimizer, loss_fn = private.model, private.optimizer, private.criterion
        n_batches = len(private.batches)
        epoch_batches = lambda: private.batches
    elif dist.context() is not None:  # a shard per process, gradients averaged by DDP
        net = dist.wrap_ddp(net)
        epoch_batches = dist.ShardedBatches(len(X), batch_size, seed)
        n_batches = len(epoch_batches)
    else:
        n_batches = (len(X) + batch_size - 1) // batch_size
        epoch_batches = lambda: batches(len(X), batch_size, generator)

    def batch_loss(idx):
        inputs, targets = objective.example(X[idx], generator)
        return loss_fn(net(inputs), targets)

    net.train()
    losses = train_epochs(optimizer, spec.epochs, epoch_batches, batch_loss, progress, label, n_batches,
                          private=private)
    trained = private.trained_module() if private is not None else dist.unwrap(net)
    encoder.load_state_dict(nn.Sequential(*list(trained)[:-1]).state_dict())
    return losses, (private.engine if private is not None else None)
