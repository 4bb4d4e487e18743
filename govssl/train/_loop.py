"""The one training loop every phase uses: plain or private batches, progress, loss per epoch."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from govssl.train._distributed import epoch_mean

__all__ = ["batches", "train_epochs"]


def batches(n: int, batch_size: int, generator: torch.Generator):
    """Shuffled batches of indices (without replacement) for the non-private path."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) >= 2:
            yield idx


def _plain_backward(loss: torch.Tensor) -> float:
    loss.backward()
    return loss.item()


def train_epochs(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    epoch_batches: Callable[[], Iterable[torch.Tensor]],
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    progress,
    label: str,
    n_batches: int,
    private=None,
) -> list[float]:
    """Run ``epochs`` passes; ``epoch_batches()`` yields index tensors, ``batch_loss(idx)`` their
    loss. ``private`` (a :class:`govssl.train._dp.Private`) supplies the clipping backward pass
    and the noise-only step of an empty Poisson batch. Returns the mean loss of each epoch."""
    backward = private.backward if private is not None else _plain_backward
    losses = []
    with progress.task(label, epochs * n_batches) as task:
        for _ in range(epochs):
            total, count = 0.0, 0
            for batch in epoch_batches():
                size = len(batch)
                if size == 0:  # Poisson sampling may draw an empty batch
                    if private is not None:
                        private.empty_step()
                    task.advance(1)
                    continue
                loss = batch_loss(batch)
                optimizer.zero_grad(set_to_none=True)
                value = backward(loss)
                optimizer.step()
                total, count = total + value * size, count + size
                task.advance(1, loss=value)
            losses.append(epoch_mean(total, count))  # over every process's rows under torch.distributed
    return losses
