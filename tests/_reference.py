"""Independent references that benchmarks and tests compare govssl's engines against."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["torch_pgd"]


def torch_pgd(model, X, y, eps, step_size, steps, restarts, mask, low, high, seed):
    """L-inf PGD with random restarts (Madry et al. 2018) in plain PyTorch: each restart starts
    uniformly in the eps box; the first restart's result is kept, later ones replace it where
    they fool the model."""
    X, y = torch.as_tensor(X), torch.as_tensor(y)
    mask, low, high = (torch.as_tensor(a) for a in (mask, low, high))
    generator = torch.Generator().manual_seed(seed)
    best = None
    for restart in range(max(1, restarts)):
        x = X.clone()
        if restarts > 0:
            x = x + (torch.rand(X.shape, generator=generator) * 2 - 1) * eps * mask
        x = torch.max(torch.min(x, high), low)
        for _ in range(steps):
            x.requires_grad_(True)
            loss = nn.functional.cross_entropy(model(x), y)
            (grad,) = torch.autograd.grad(loss, x)
            x = x.detach() + step_size * grad.sign() * mask
            x = torch.max(torch.min(x, X + eps), X - eps)
            x = torch.max(torch.min(x, high), low)
        with torch.no_grad():
            fooled = model(x).argmax(1) != y
        if best is None:
            best = x
        else:
            best[fooled] = x[fooled]
    return best.detach().numpy()
