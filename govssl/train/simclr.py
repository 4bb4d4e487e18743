"""SimCLR's NT-Xent loss (Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive
Learning of Visual Representations." ICML 2020, arXiv:2002.05709).

Two augmented views of each of N images; each of the 2N views must find its partner among the
other 2N - 1 (cosine similarity / temperature, cross-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from govssl.train.scarf import InfoNCELoss

__all__ = ["NTXentLoss"]


class NTXentLoss(InfoNCELoss):
    """Normalised temperature-scaled cross-entropy over 2N views, averaged over the views: InfoNCE
    where the negatives include the other views of the same batch."""

    def __init__(self, temperature: float = 0.5):
        super().__init__(temperature)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        assert a.shape == b.shape and a.dim() == 2, (a.shape, b.shape)
        n = a.shape[0]
        z = F.normalize(torch.cat([a, b]), dim=1)
        logits = z @ z.T / self.temperature
        logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
        return F.cross_entropy(logits, targets)
