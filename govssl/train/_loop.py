"""The one training loop every phase uses: plain or Opacus batches, progress, loss per epoch."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

__all__ = ["batches", "train_epochs"]


def batches(n: int, batch_size: int, generator: torch.Generator):
    """Shuffled batches of indices (without replacement) for the non-private path."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) >= 2:
            yield idx


def train_epochs(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    epoch_batches: Callable[[], Iterable[torch.Tensor]],
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    progress,
    label: str,
    n_batches: int,
) -> list[float]:
    """Run ``epochs`` passes; ``epoch_batches()`` yields batches (index tensors or Opacus's
    ``(x, y)`` tuples), ``batch_loss(batch)`` their loss. Returns the mean loss of each epoch."""
    losses = []
    with progress.task(label, epochs * n_batches) as task:
        for _ in range(epochs):
            total, count = 0.0, 0
            for batch in epoch_batches():
                size = len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)
                if size == 0:  # Poisson sampling may draw an empty batch
                    task.advance(1)
                    continue
                loss = batch_loss(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, count = total + loss.item() * size, count + size
                task.advance(1, loss=loss.item())
            losses.append(total / max(count, 1))
    return losses
