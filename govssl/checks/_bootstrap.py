"""Vectorised non-parametric bootstrap (Efron 1979) over weighted sums.

A resample is a vector of counts (how often each row was drawn). Every metric govssl bootstraps
is a function of weighted sums of per-row indicators, so ``counts @ indicators`` gives the
metric's ingredients for a chunk of resamples in one matrix product, instead of re-running a
metric function per resample (what makes fairlearn's MetricFrame bootstrap slow).

Two intervals: the percentile interval, for statistics the bootstrap centres on their estimate
(rates, accuracies), and the debiased percentile interval, for statistics with a bias the
bootstrap repeats (a gap between the largest and smallest of several noisy rates).
"""

from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np

__all__ = ["ROW_RESAMPLE_LIMIT", "counts_drawn", "resample_counts", "bootstrap_sums", "cell_sums", "multinomial_sums", "percentile_interval",
           "debiased_percentile_interval"]


#: up to this many test rows, checks resample rows; above it (and on an out-of-core table) they
#: draw the resampled counts directly: multinomial cell counts, or Poisson weights (see
#: :func:`counts_drawn`)
ROW_RESAMPLE_LIMIT = 100_000
ROW_RESAMPLES = "row resamples"
CELL_COUNTS = "cell counts drawn from their multinomial (the row bootstrap's distribution, other draws)"


def counts_drawn(dataset, n_rows: int) -> bool:
    """Whether a check draws its resampled counts directly instead of resampling rows: on an
    out-of-core table, and above :data:`ROW_RESAMPLE_LIMIT` test rows. A resample's counts of rows
    per cell are Multinomial(n, cell shares), exactly the distribution row resampling gives, at a
    cost that does not grow with the rows; row resamples cost (resamples x rows) random draws and
    arrays, seconds and gigabytes at millions of rows. Up to the limit the rows are resampled as
    before, so the figures of smaller test splits keep their exact draws."""
    return bool(getattr(dataset, "out_of_core", False)) or int(n_rows) > ROW_RESAMPLE_LIMIT


def _draws(n: int, n_boot: int, seed: int, chunk: int = 100) -> Iterator[np.ndarray]:
    """Yield (chunk, n) arrays of row indices: the rows drawn by ``n_boot`` resamples of size ``n``."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def resample_counts(n: int, n_boot: int, seed: int, chunk: int = 100) -> Iterator[np.ndarray]:
    """Yield (chunk, n) float32 arrays: row draw counts of ``n_boot`` resamples of size ``n``."""
    for draws in _draws(n, n_boot, seed, chunk):
        size = len(draws)
        offsets = (np.arange(size) * n)[:, None]
        counts = np.bincount((draws + offsets).ravel(), minlength=size * n).reshape(size, n)
        yield counts.astype(np.float32)


def cell_sums(cells: np.ndarray, n_cells: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_cells) resampled counts of rows per cell, for rows that each fall in exactly one
    cell (``cells[i]`` in ``[0, n_cells)``): exactly ``bootstrap_sums`` of the rows' one-hot cell
    indicators with the same seed (the same resamples), counted from the drawn rows' cells instead
    of a (resamples x rows) by (rows x cells) product."""
    cells = np.asarray(cells, dtype=np.int64)
    parts = []
    for draws in _draws(len(cells), n_boot, seed):
        offsets = (np.arange(len(draws)) * n_cells)[:, None]
        parts.append(np.bincount((cells[draws] + offsets).ravel(), minlength=len(draws) * n_cells)
                     .reshape(len(draws), n_cells))
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, n_cells))


def bootstrap_sums(indicators: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, k) weighted column sums of an (n, k) matrix over the resamples."""
    indicators = np.asarray(indicators, dtype=np.float32)
    parts = [counts @ indicators for counts in resample_counts(len(indicators), n_boot, seed)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, indicators.shape[1]))


def multinomial_sums(cells: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, k) resampled cell counts, for rows that each fall in exactly one of ``k`` cells
    (``cells`` holds their counts): a resample of the n rows with replacement puts
    Multinomial(n, cells / n) rows in the cells, so this draws those counts directly. The same
    distribution as ``bootstrap_sums`` of the rows' one-hot cell indicators, at a cost that does
    not grow with the rows (the random draws differ: the same seed gives other resamples)."""
    cells = np.asarray(cells, dtype=np.float64)
    n = int(round(cells.sum()))
    if n == 0:
        return np.zeros((n_boot, len(cells)))
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, cells / cells.sum(), size=n_boot).astype(np.float64)


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0, ignoring resamples where the metric is undefined (NaN)."""
    alpha = (1 - confidence) / 2
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, on purpose
        low = np.nanquantile(samples, alpha, axis=0)
        high = np.nanquantile(samples, 1 - alpha, axis=0)
    return low, high


def debiased_percentile_interval(
    samples: np.ndarray, estimate: np.ndarray, confidence: float, bounds: tuple[float, float] = (-np.inf, np.inf),
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval moved by twice the bootstrap's bias, along axis 0, ignoring NaN resamples.

    The bootstrap's estimate of bias is ``mean(samples) - estimate`` (Efron and Tibshirani 1993,
    ch. 10). Where the statistic is biased, the resamples repeat the bias on top of the
    estimate's, so the percentile interval sits near ``estimate + bias`` rather than near the
    truth, ``estimate - bias``: this interval is the percentile interval moved by ``-2 * bias``,
    centred on the bias-corrected estimate.
    It is then widened to contain the estimate (so a rule on a bound is never laxer than one on
    the estimate) and clipped to the statistic's range ``bounds``. Without bias it is the
    percentile interval.
    """
    estimate = np.asarray(estimate, dtype=np.float64)
    low, high = percentile_interval(samples, confidence)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, on purpose
        shift = 2 * (np.nanmean(samples, axis=0) - estimate)
    low = np.clip(np.minimum(low - shift, estimate), *bounds)
    high = np.clip(np.maximum(high - shift, estimate), *bounds)
    return low, high
