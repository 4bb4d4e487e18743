"""VIME's self-supervised task: mask-vector estimation plus feature reconstruction.

Yoon, Zhang, Jordon, van der Schaar. "VIME: Extending the Success of Self- and Semi-supervised
Learning to Tabular Domain." NeurIPS 2020. Features are masked at ``mask_rate`` and the masked
values replaced by draws from each feature's empirical marginal; from the corrupted row the
encoder must tell which features were replaced (binary cross-entropy) and recover the original
row (squared error, weighted by ``alpha``). The loss is per example, so DP-SGD can clip it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from govssl.train.scarf import ScarfCorruption

__all__ = ["VimeCorruption", "VimeHeads", "VimeLoss"]


class VimeCorruption(ScarfCorruption):
    """Like SCARF's corruption (a one-hot block counts as one feature), but also returns the mask."""

    def with_mask(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        mask = torch.rand(batch, self.n_features, generator=generator) < self.rate
        donors = torch.randint(0, self.X.shape[0], (batch, self.n_features), generator=generator)
        mask_cols = mask[:, self.col_to_feature]
        donor_values = self.X[donors[:, self.col_to_feature], self.columns]
        corrupted = torch.where(mask_cols, donor_values, x)
        # a replaced value that happens to equal the original is not a change to detect
        changed = mask_cols & (corrupted != x)
        return corrupted, changed.float()


class VimeHeads(nn.Module):
    """Mask estimator and feature estimator on the embedding; output = [mask logits | features]."""

    def __init__(self, width: int, n_columns: int):
        super().__init__()
        self.mask = nn.Linear(width, n_columns)
        self.features = nn.Linear(width, n_columns)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mask(z), self.features(z)], dim=1)


class VimeLoss(nn.Module):
    """BCE(mask) + alpha * MSE(features), per example; ``target`` = [mask | original row].

    ``reduction`` is an attribute (as on torch's losses) because the private path switches it to
    "none" to get per-example losses for clipping.
    """

    def __init__(self, alpha: float = 2.0, reduction: str = "mean"):
        super().__init__()
        if alpha < 0:
            raise ValueError(f"alpha must be non-negative; got {alpha}")
        self.alpha = alpha
        self.reduction = reduction

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        assert output.shape == target.shape and output.shape[1] % 2 == 0, (output.shape, target.shape)
        d = output.shape[1] // 2
        mask_loss = F.binary_cross_entropy_with_logits(output[:, :d], target[:, :d], reduction="none").mean(1)
        feature_loss = ((output[:, d:] - target[:, d:]) ** 2).mean(1)
        per_example = mask_loss + self.alpha * feature_loss
        if self.reduction == "none":
            return per_example
        return per_example.sum() if self.reduction == "sum" else per_example.mean()
