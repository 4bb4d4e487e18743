"""VIME's self-supervised task: mask-vector estimation plus feature reconstruction.

Yoon, Zhang, Jordon, van der Schaar. "VIME: Extending the Success of Self- and Semi-supervised
Learning to Tabular Domain." NeurIPS 2020. Features are masked at ``mask_rate`` and the masked
values replaced by draws from each feature's empirical marginal; from the corrupted row the
encoder must tell which features were replaced (binary cross-entropy) and recover the original
row (squared error, weighted by ``alpha``). The loss is per example, so DP-SGD can clip it,
provided the replacement values read no other private row (``VimeCorruption(independent=True)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from govssl.train.scarf import ScarfCorruption

__all__ = ["VimeCorruption", "VimeHeads", "VimeLoss"]


class VimeCorruption(ScarfCorruption):
    """Like SCARF's corruption (a one-hot block counts as one feature), but also returns the mask.

    Replacement values come from each feature's empirical marginal, that is from other rows of
    ``X``, as in VIME. With ``independent=True`` they come from a distribution that reads no row
    instead: a standard normal for a numeric feature (standardised columns), a uniformly drawn
    level for a categorical one (``categorical`` marks the groups). Under DP this is required: a
    corrupted example must depend on its own row only, or one person's row would move the
    gradients of other examples, which per-example clipping does not bound.
    """

    def __init__(self, X: torch.Tensor, groups: list[slice], rate: float, categorical: list[bool] | None = None,
                 independent: bool = False):
        super().__init__(X, groups, rate)
        self.independent = independent
        if not independent:
            return
        if categorical is None or len(categorical) != len(groups):
            raise ValueError("independent replacement values need the kind (numeric or categorical) of every group")
        self.X = None  # hold no row
        widths = torch.tensor([block.stop - block.start for block in groups])
        starts = torch.tensor([block.start for block in groups])
        self.levels = widths.float()
        self.col_offset = torch.arange(len(self.columns)) - starts[self.col_to_feature]
        self.numeric_col = ~torch.tensor(categorical, dtype=torch.bool)[self.col_to_feature]

    def _replacements(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        if not self.independent:
            donors = torch.randint(0, self.X.shape[0], (batch, self.n_features), generator=generator)
            return self.X[donors[:, self.col_to_feature], self.columns]
        level = (torch.rand(batch, self.n_features, generator=generator) * self.levels).long()
        one_hot = (level[:, self.col_to_feature] == self.col_offset).float()
        normal = torch.randn(batch, len(self.columns), generator=generator)
        return torch.where(self.numeric_col, normal, one_hot)

    def with_mask(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        mask = torch.rand(batch, self.n_features, generator=generator) < self.rate
        mask_cols = mask[:, self.col_to_feature]
        corrupted = torch.where(mask_cols, self._replacements(batch, generator), x)
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
