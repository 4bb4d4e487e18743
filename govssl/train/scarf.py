"""SCARF: self-supervised contrastive learning using random feature corruption.

Bahri, Jiang, Tay, Metzler. "SCARF: Self-Supervised Contrastive Learning using Random Feature
Corruption." ICLR 2022 (arXiv:2106.15147). A view of a row replaces a random subset of its
features by draws from each feature's empirical marginal (the same feature of random training
rows); the encoder learns to match a row with its corrupted view among the batch (InfoNCE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ScarfCorruption", "InfoNCELoss"]


class ScarfCorruption:
    """Corrupts whole features (a one-hot block counts as one feature) at ``rate``."""

    def __init__(self, X: torch.Tensor, groups: list[slice], rate: float):
        if not 0 < rate < 1:
            raise ValueError(f"corruption rate must be in (0, 1); got {rate}")
        self.X = X
        self.rate = rate
        self.n_features = len(groups)
        col_to_feature = torch.empty(X.shape[1], dtype=torch.long)
        for i, block in enumerate(groups):
            col_to_feature[block] = i
        self.col_to_feature = col_to_feature
        self.columns = torch.arange(X.shape[1])

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch = x.shape[0]
        mask = torch.rand(batch, self.n_features, generator=generator) < self.rate
        donors = torch.randint(0, self.X.shape[0], (batch, self.n_features), generator=generator)
        mask_cols = mask[:, self.col_to_feature]
        donor_values = self.X[donors[:, self.col_to_feature], self.columns]
        return torch.where(mask_cols, donor_values, x)


class InfoNCELoss(nn.Module):
    """InfoNCE over a batch: row i of ``a`` must pick row i of ``b`` (cosine similarity / tau)."""

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive; got {temperature}")
        self.temperature = temperature

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        assert a.shape == b.shape and a.dim() == 2, (a.shape, b.shape)
        logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / self.temperature
        targets = torch.arange(a.shape[0])
        return F.cross_entropy(logits, targets)
