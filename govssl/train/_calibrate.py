"""Temperature scaling of the released classifier (Guo et al. 2017, "On Calibration of Modern
Neural Networks").

One temperature T divides the logits: the predicted class stays the same, the probabilities
move towards (T > 1) or away from (T < 1) uniform. T minimises the cross-entropy on labelled rows
held out from the classifier's training. Without DP the one-dimensional minimisation is exact;
under DP it is DP-SGD on the held-out rows (:func:`govssl.train._dp.fit_scale_private`), composed
with the other phases in one accountant.

The temperature is folded into the last linear layer (its weight and bias divided by T), so the
model in memory, the saved weights file and every check that reads the model see the same
calibrated probabilities with no extra step; the file's metadata states the temperature.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["holdout_split", "logits_of", "fit_scale", "fold_scale", "SCALE_BOUNDS", "PRIVATE_STEPS", "PRIVATE_LR",
           "PRIVATE_MAX_GRAD_NORM"]

# The inverse temperature s = 1 / T is searched in [0.01, 100]: temperatures from 0.01 to 100.
SCALE_BOUNDS = (0.01, 100.0)
# DP-SGD on s: full batches (every held-out row in each step), this many steps, this step size on
# the mean clipped gradient; the estimate averages the second half of the iterates. The per-example
# gradient of the cross-entropy in s is (confidence-weighted logit - the true class's logit), as
# large as the logit margin: clipped to 1 (the classifier's norm), the rows the model is confidently
# wrong on are cut short and the fitted temperature is biased low (on the demo's held-out rows the
# clipped gradient vanishes at T = 1.8 against 2.9 unclipped); at 3 the bias is small (T = 2.6)
# for three times the noise. Chosen on the demo's held-out logits (epsilon 0.3 alone, 16 noise
# draws: test ECE 0.033 on average, 0.044 at most, from 0.113; clipping 1: 0.080) among steps
# 30 / 60 / 120, step sizes 0.05 to 1 and clipping 1 to 5: ``python benchmarks/bench_private_temperature.py``.
PRIVATE_STEPS = 60
PRIVATE_LR = 0.1
PRIVATE_MAX_GRAD_NORM = 3.0


def holdout_split(rows: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows to fit the classifier on, held-out rows for calibration), both sorted: a stratified
    ``fraction`` of ``rows`` per class, each class keeping at least one row for the classifier."""
    rng = np.random.default_rng(seed + 2)
    held = []
    for label in np.unique(y[rows]):
        members = rows[y[rows] == label]
        take = min(len(members) - 1, int(round(len(members) * fraction)))
        if take > 0:
            held.append(rng.choice(members, size=take, replace=False))
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=rows.dtype)
    return np.setdiff1d(rows, held), held


@torch.no_grad()
def logits_of(model: nn.Module, X: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    model.eval()
    return torch.cat([model(X[start : start + batch_size]) for start in range(0, len(X), batch_size)])


def fit_scale(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The inverse temperature (within :data:`SCALE_BOUNDS`) that minimises the mean cross-entropy
    of ``softmax(s * logits)``: a bounded scalar minimisation over log s (the loss is convex in s)."""
    from scipy.optimize import minimize_scalar

    z, labels = logits.double(), y.long()

    def loss(log_s: float) -> float:
        return float(nn.functional.cross_entropy(z * float(np.exp(log_s)), labels))

    low, high = np.log(SCALE_BOUNDS)
    result = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


@torch.no_grad()
def fold_scale(model: nn.Sequential, scale: float) -> None:
    """Multiply the last layer's weight and bias by ``scale``: the logits become ``scale * logits``."""
    head = model[-1]
    head.weight.mul_(scale)
    if head.bias is not None:
        head.bias.mul_(scale)
