"""The statistics of monitoring, vectorised over numpy arrays.

- :func:`ks_weighted`: two-sample Kolmogorov-Smirnov between a batch and a reference held as
  distinct values with counts (exact for the reference's values), with the asymptotic p-value of
  scipy's ``ks_2samp`` (``kstwo`` at the effective sample size n m / (n + m)). With ties
  (integer-valued columns) the test is conservative: its false-alarm rate is below its level.
- :func:`chi2_counts`: Pearson's chi-squared test of homogeneity on a 2 x k table of reference
  and batch counts, levels too rare for the approximation merged first.
- :func:`psi`, :func:`js_distance`: effect sizes on the same bins (population stability index,
  Jensen-Shannon distance in bits, both with the smoothing ``EPS`` of empty bins).
- :func:`holm`: Holm's step-down adjustment (Holm 1979), which controls the family-wise error
  rate under any dependence between the tests.
- :func:`mmd_permutation`: squared maximum mean discrepancy (Gretton et al. 2012) with a
  Gaussian kernel of a given bandwidth and a permutation p-value that counts the observed
  statistic, ``(1 + #{perm >= observed}) / (1 + n_perm)`` (Phipson & Smyth 2010), so that it is
  never 0 and the test keeps its level.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["EPS", "ks_weighted", "chi2_counts", "psi", "js_distance", "holm", "mmd_permutation",
           "median_bandwidth", "nearest_distance", "merge_rare"]

EPS = 1e-4  # share given to an empty bin before PSI / JS (their logarithms need > 0)
MIN_EXPECTED = 5.0  # chi-squared: levels expected fewer times than this in the batch are merged


def ks_weighted(batch: np.ndarray, ref_values: np.ndarray, ref_counts: np.ndarray) -> tuple[float, float]:
    """(D, p-value) of the two-sample KS test; ``ref_values`` sorted ascending and distinct."""
    x = np.sort(np.asarray(batch, dtype=np.float64))
    n, m = len(x), float(ref_counts.sum())
    ref_cdf = np.cumsum(ref_counts) / m
    points = np.concatenate([ref_values, x])
    f_batch = np.searchsorted(x, points, side="right") / n
    at = np.searchsorted(ref_values, points, side="right") - 1
    f_ref = np.where(at >= 0, ref_cdf[np.clip(at, 0, None)], 0.0)
    d = float(np.max(np.abs(f_batch - f_ref))) if len(points) else 0.0
    en = n * m / (n + m)
    p = float(stats.kstwo.sf(d, np.round(en))) if en >= 1 else 1.0
    return d, min(max(p, 0.0), 1.0)


def merge_rare(ref_counts: np.ndarray, batch_counts: np.ndarray, n_small: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts with the levels whose reference share times ``n_small`` is below MIN_EXPECTED
    merged into one bin (kept only if it is not empty)."""
    share = ref_counts / max(ref_counts.sum(), 1)
    rare = share * n_small < MIN_EXPECTED
    if not rare.any():
        return ref_counts, batch_counts
    keep_r, keep_b = ref_counts[~rare], batch_counts[~rare]
    merged_r, merged_b = ref_counts[rare].sum(), batch_counts[rare].sum()
    if merged_r + merged_b == 0:
        return keep_r, keep_b
    if merged_r / max(ref_counts.sum(), 1) * n_small < MIN_EXPECTED and len(keep_r):
        smallest = int(np.argmin(keep_r))  # still too rare together: joined with the smallest other level
        keep_r, keep_b = keep_r.copy(), keep_b.copy()
        keep_r[smallest] += merged_r
        keep_b[smallest] += merged_b
        return keep_r, keep_b
    return np.append(keep_r, merged_r), np.append(keep_b, merged_b)


def chi2_counts(ref_counts: np.ndarray, batch_counts: np.ndarray) -> tuple[float, float, int]:
    """(statistic, p-value, degrees of freedom) of the chi-squared test of homogeneity."""
    ref_counts = np.asarray(ref_counts, dtype=np.float64)
    batch_counts = np.asarray(batch_counts, dtype=np.float64)
    ref_counts, batch_counts = merge_rare(ref_counts, batch_counts, int(min(ref_counts.sum(), batch_counts.sum())))
    used = (ref_counts + batch_counts) > 0
    table = np.vstack([ref_counts[used], batch_counts[used]])
    if table.shape[1] < 2:
        return 0.0, 1.0, 0
    statistic, p, dof, _ = stats.chi2_contingency(table, correction=False)
    return float(statistic), float(p), int(dof)


def _shares(counts: np.ndarray) -> np.ndarray:
    p = np.asarray(counts, dtype=np.float64)
    p = p / max(p.sum(), 1.0)
    p = np.maximum(p, EPS)
    return p / p.sum()


def psi(ref_counts: np.ndarray, batch_counts: np.ndarray) -> float:
    """Population stability index sum (q - p) ln(q / p) over the bins (p reference, q batch)."""
    p, q = _shares(ref_counts), _shares(batch_counts)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(ref_counts: np.ndarray, batch_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2: in [0, 1])."""
    p, q = _shares(ref_counts), _shares(batch_counts)
    mid = 0.5 * (p + q)
    div = 0.5 * np.sum(p * np.log2(p / mid)) + 0.5 * np.sum(q * np.log2(q / mid))
    return float(np.sqrt(max(div, 0.0)))


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given (each at most 1, never below its raw value)."""
    p = np.asarray(p_values, dtype=np.float64)
    k = len(p)
    if k == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (k - np.arange(k))))
    out = np.empty(k)
    out[order] = adjusted
    return [float(v) for v in out]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aa = np.einsum("ij,ij->i", a, a)[:, None]
    bb = np.einsum("ij,ij->i", b, b)[None, :]
    return np.maximum(aa + bb - 2.0 * (a @ b.T), 0.0)


def median_bandwidth(x: np.ndarray) -> float:
    """The median heuristic: the median of the pairwise distances between distinct rows."""
    d = np.sqrt(_sq_dists(x, x))
    upper = d[np.triu_indices(len(x), k=1)]
    median = float(np.median(upper)) if upper.size else 1.0
    return median if median > 0 else 1.0


def nearest_distance(rows: np.ndarray, reference: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Euclidean distance from each row to its nearest reference row."""
    out = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), chunk):
        block = rows[start:start + chunk].astype(np.float64)
        out[start:start + chunk] = np.sqrt(_sq_dists(block, reference).min(axis=1))
    return out


def mmd_permutation(x: np.ndarray, y: np.ndarray, bandwidth: float, n_perm: int, seed: int) -> tuple[float, float]:
    """(squared MMD, permutation p-value) between samples ``x`` and ``y`` with the Gaussian
    kernel exp(-|a - b|^2 / (2 bandwidth^2)). The statistic is the biased (V-statistic) estimate
    (a - b)' K (a - b), a and b the two samples' weight vectors; every permutation of the pooled
    rows is one more weight vector, so all of them come from one matrix product."""
    z = np.vstack([x, y]).astype(np.float64)
    n, total = len(x), len(x) + len(y)
    kernel = np.exp(-_sq_dists(z, z) / (2.0 * bandwidth ** 2))
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((total, n_perm)), axis=0)  # one permutation of the rows per column
    labels = np.zeros((total, n_perm + 1), dtype=bool)
    labels[:n, 0] = True
    labels[:, 1:] = order < n
    # float32 for the products (twice as fast); the observed value is recomputed in float64
    weights = np.where(labels, 1.0 / n, -1.0 / (total - n)).astype(np.float32)
    values = np.einsum("ij,ij->j", weights, kernel.astype(np.float32) @ weights, dtype=np.float64)
    w0 = weights[:, 0].astype(np.float64)
    observed = float(w0 @ kernel @ w0)
    p = (1.0 + float(np.sum(values[1:] >= values[0] * (1 - 1e-5)))) / (1.0 + n_perm)
    return observed, p
