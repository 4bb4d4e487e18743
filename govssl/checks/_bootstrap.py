"""Vectorised non-parametric bootstrap (Efron 1979) over weighted sums.

A resample is a vector of counts (how often each row was drawn). Every metric govssl bootstraps
is a function of weighted sums of per-row indicators, so ``counts @ indicators`` gives the
metric's ingredients for a chunk of resamples in one matrix product, instead of re-running a
metric function per resample (what makes fairlearn's MetricFrame bootstrap slow).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

__all__ = ["resample_counts", "bootstrap_sums", "percentile_interval"]


def resample_counts(n: int, n_boot: int, seed: int, chunk: int = 100) -> Iterator[np.ndarray]:
    """Yield (chunk, n) float32 arrays: row draw counts of ``n_boot`` resamples of size ``n``."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        draws = rng.integers(0, n, size=(size, n))
        offsets = (np.arange(size) * n)[:, None]
        counts = np.bincount((draws + offsets).ravel(), minlength=size * n).reshape(size, n)
        yield counts.astype(np.float32)
        done += size


def bootstrap_sums(indicators: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, k) weighted column sums of an (n, k) matrix over the resamples."""
    indicators = np.asarray(indicators, dtype=np.float32)
    parts = [counts @ indicators for counts in resample_counts(len(indicators), n_boot, seed)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, indicators.shape[1]))


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0, ignoring resamples where the metric is undefined (NaN)."""
    alpha = (1 - confidence) / 2
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, on purpose
            low = np.nanquantile(samples, alpha, axis=0)
            high = np.nanquantile(samples, 1 - alpha, axis=0)
    return low, high
