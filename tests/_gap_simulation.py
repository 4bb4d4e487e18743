"""Coverage of the fairness check's intervals on synthetic groups with known true rates.

Shared by ``tests/checks/test_gap_coverage.py``, ``tests/checks/test_rate_coverage.py``,
``benchmarks/bench_gap_intervals.py``, ``benchmarks/bench_rate_intervals.py`` and
``benchmarks/bench_calibration_intervals.py``.

A scenario fixes each group's size and true base rate, TPR and FPR, hence its confusion-cell
probabilities and the true gaps. A replicate data set draws each group's confusion counts from
its multinomial; a bootstrap resample draws the n rows' cells from Multinomial(n, counts / n),
which is exactly the distribution of the cell sums of the check's row resampling
(``bootstrap_sums``), without materialising rows. Estimates and resamples go through the check's
own ``_rates`` and ``_aggregates``; the interval methods compared are the check's
(``aggregate_intervals``), the plain percentile interval it used before, and three references:
the basic (reverse percentile) interval, Efron's bias-corrected (BC) percentile interval and BCa
(Efron and Tibshirani 1993, ch. 13-14).

Per-group rates are binomial proportions (successes over a denominator: selections or correct
predictions over the group's rows, true positives over its positives, false positives over its
negatives). Their methods: the check's exact Clopper-Pearson interval of the observed counts
(``clopper_pearson_interval``), the bootstrap percentile interval of the resampled rates it used
before, and the Wilson (1927), Agresti-Coull (1998) and Jeffreys intervals, the references of
Brown, Cai and DasGupta 2001 ("Interval estimation for a binomial proportion", Statistical
Science 16(2)).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import betaincinv, ndtr, ndtri

from govssl.checks._binomial import clopper_pearson_interval
from govssl.checks._bootstrap import percentile_interval
from govssl.checks.fairness import AGGREGATE_METRICS, _aggregates, _rate_counts, _rates, aggregate_intervals
from govssl.checks.performance import calibration_bins, calibration_interval

__all__ = ["Scenario", "SCENARIOS", "RATE_SCENARIOS", "SPLIT_SCENARIOS", "METHODS", "RATE_METHODS", "RATES",
           "simulate", "quantile_at", "CalibrationScenario", "CALIBRATION_SCENARIOS", "CALIBRATION_METHODS",
           "CONFIDENCE_LEVELS", "calibration_error", "simulate_calibration"]

RATES = ("selection_rate", "true_positive_rate", "false_positive_rate", "accuracy")


@dataclass(frozen=True)
class Scenario:
    name: str
    sizes: tuple[int, ...]
    base_rate: tuple[float, ...]  # P(y = 1) per group
    tpr: tuple[float, ...]
    fpr: tuple[float, ...]

    def cell_probabilities(self) -> np.ndarray:
        """(groups, 4) probabilities of TP, FP, FN, TN within each group."""
        b, t, f = (np.asarray(x, dtype=np.float64) for x in (self.base_rate, self.tpr, self.fpr))
        return np.stack([b * t, (1 - b) * f, b * (1 - t), (1 - b) * (1 - f)], axis=1)

    def truth(self) -> dict[str, np.ndarray]:
        """True per-group rates and aggregates (rates are ratios of cell probabilities)."""
        rates = _rates(self.cell_probabilities())
        return {**rates, **_aggregates(rates)}


# Six groups shaped like Adult's sex*race test groups above the check's min_group_size (3,000
# down to 50 rows), and four groups of 2,500 down to 60. Zero gap: every group alike. Small gap:
# a few points between groups. Large gap: Adult-like, selection rates 4% to 28%.
_SIX, _FOUR = (3000, 1400, 800, 300, 120, 50), (2500, 700, 200, 60)
SCENARIOS = (
    Scenario("6 groups, zero gap", _SIX, (0.24,) * 6, (0.60,) * 6, (0.08,) * 6),
    Scenario("6 groups, small gap", _SIX, (0.24, 0.22, 0.25, 0.23, 0.26, 0.24),
             (0.60, 0.57, 0.62, 0.58, 0.63, 0.60), (0.08, 0.07, 0.09, 0.08, 0.075, 0.085)),
    Scenario("6 groups, large gap", _SIX, (0.31, 0.11, 0.19, 0.06, 0.28, 0.10),
             (0.62, 0.45, 0.55, 0.40, 0.60, 0.50), (0.12, 0.03, 0.07, 0.02, 0.10, 0.04)),
    Scenario("4 groups, zero gap", _FOUR, (0.24,) * 4, (0.60,) * 4, (0.08,) * 4),
    Scenario("4 groups, small gap", _FOUR, (0.24, 0.22, 0.25, 0.23), (0.60, 0.57, 0.62, 0.58), (0.08, 0.07, 0.09, 0.08)),
    Scenario("4 groups, large gap", _FOUR, (0.31, 0.11, 0.19, 0.25), (0.62, 0.45, 0.55, 0.40), (0.12, 0.03, 0.07, 0.10)),
)

# Per-group rates, on the six Adult-like group sizes: Adult-like rates (the large-gap scenario:
# the 50-row group has 5 positives on average, a TPR of 0.50 and an FPR of 0.04); rates near 0
# and 1 (an accurate model: TPR 0.90-0.99, FPR 0.3-2%, accuracy 0.97-0.99); few positives (base
# rates 2-8%: 4 positives on average in the 50-row group, 6 in the 300-row one, 28 in the
# 1,400-row one).
RATE_SCENARIOS = (
    replace(SCENARIOS[2], name="6 groups, Adult-like rates"),
    Scenario("6 groups, rates near 0 and 1", _SIX, (0.30, 0.12, 0.20, 0.05, 0.25, 0.10),
             (0.97, 0.95, 0.98, 0.90, 0.96, 0.99), (0.010, 0.005, 0.020, 0.003, 0.015, 0.010)),
    Scenario("6 groups, few positives", _SIX, (0.03, 0.02, 0.05, 0.02, 0.06, 0.08),
             (0.50, 0.30, 0.70, 0.60, 0.40, 0.50), (0.05, 0.10, 0.03, 0.20, 0.05, 0.08)),
)

# Model-wide accuracy (the performance check's bootstrap resamples the whole test split, one
# group): a digits-sized split (450 rows) at accuracy 0.97 and 0.99, 1,000 and 3,000 rows, and
# the Adult test split (16,281 rows) at an Adult-like 0.86.
SPLIT_SCENARIOS = (
    Scenario("450 rows, accuracy 0.97", (450,), (0.30,), (0.95,), (0.02,)),
    Scenario("450 rows, accuracy 0.99", (450,), (0.30,), (0.99,), (0.01,)),
    Scenario("1,000 rows, accuracy 0.86", (1000,), (0.24,), (0.60,), (0.06,)),
    Scenario("3,000 rows, accuracy 0.99", (3000,), (0.30,), (0.99,), (0.01,)),
    Scenario("16,281 rows, accuracy 0.86", (16281,), (0.24,), (0.60,), (0.06,)),
)


def quantile_at(samples: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per-column quantiles along axis 0 at per-column levels, ignoring NaN (numpy's 'linear')."""
    ordered = np.sort(samples, axis=0)  # NaN last
    defined = (~np.isnan(samples)).sum(axis=0)
    pos = np.clip(levels, 0, 1) * (defined - 1)
    below = np.clip(np.floor(np.nan_to_num(pos)), 0, np.maximum(defined - 1, 0)).astype(int)
    above = np.minimum(below + 1, np.maximum(defined - 1, 0))
    lo = np.take_along_axis(ordered, below[None], axis=0)[0]
    hi = np.take_along_axis(ordered, above[None], axis=0)[0]
    out = lo + (pos - below) * (hi - lo)
    return np.where((defined > 0) & np.isfinite(pos), out, np.nan)


def _z0(samples, estimate):
    """Efron's bias constant: the normal quantile of the share of resamples below the estimate
    (ties count half, as scipy.stats.bootstrap does)."""
    defined = (~np.isnan(samples)).sum(axis=0)
    share = ((samples < estimate).sum(axis=0) + (samples <= estimate).sum(axis=0)) / (2 * defined)
    return ndtri(share)


def percentile(cells, boot_cells, confidence):
    points, boots = _aggregates(_rates(cells)), _aggregates(_rates(boot_cells))
    return {m: (points[m], *percentile_interval(boots[m], confidence)) for m in AGGREGATE_METRICS}


def basic(cells, boot_cells, confidence):
    """Reverse percentile: [2 estimate - q_high, 2 estimate - q_low]."""
    out = {}
    for m, (point, low, high) in percentile(cells, boot_cells, confidence).items():
        out[m] = (point, 2 * point - high, 2 * point - low)
    return out


def bc(cells, boot_cells, confidence, acceleration=None):
    """Bias-corrected percentile: levels Phi(2 z0 -/+ z); BCa with an acceleration."""
    points, boots = _aggregates(_rates(cells)), _aggregates(_rates(boot_cells))
    z = ndtri(1 - (1 - confidence) / 2)
    out = {}
    for m in AGGREGATE_METRICS:
        z0 = _z0(boots[m], points[m])
        a = 0.0 if acceleration is None else acceleration[m]
        with np.errstate(all="ignore"):  # all resamples on one side (z0 infinite): the extreme resample
            levels = [np.where(np.isinf(z0), ndtr(z0), ndtr(z0 + (z0 + s) / (1 - a * (z0 + s)))) for s in (-z, z)]
        out[m] = (points[m], quantile_at(boots[m], levels[0]), quantile_at(boots[m], levels[1]))
    return out


def bca(cells, boot_cells, confidence):
    """BCa, with the jackknife acceleration computed exactly in cell space: leaving out one row
    of cell c gives the same statistic for all of that cell's rows."""
    k = cells.shape[-2] * 4
    flat = cells.reshape(*cells.shape[:-2], k)
    left_out = (flat[..., None, :] - np.eye(k)).reshape(*cells.shape[:-2], k, *cells.shape[-2:])
    jack = _aggregates(_rates(left_out))  # (..., k) per metric
    acceleration = {}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for m in AGGREGATE_METRICS:
            w = np.where((flat > 0) & np.isfinite(jack[m]), flat, 0.0)
            values = np.where(w > 0, jack[m], 0.0)
            mean = (w * values).sum(axis=-1, keepdims=True) / w.sum(axis=-1, keepdims=True)
            u = mean - values
            a = (w * u**3).sum(axis=-1) / (6 * (w * u**2).sum(axis=-1) ** 1.5)
            acceleration[m] = np.nan_to_num(a)
    return bc(cells, boot_cells, confidence, acceleration)


def debiased(cells, boot_cells, confidence):
    return aggregate_intervals(cells, boot_cells, confidence)


METHODS = {"percentile": percentile, "debiased": debiased, "basic": basic, "bc": bc, "bca": bca}


def _binomial(successes, trials, low, high):
    """Bounds in [0, 1]; 0 at no successes, 1 at all; NaN where there are no trials."""
    low = np.where(successes == 0, 0.0, np.clip(low, 0.0, 1.0))
    high = np.where(successes == trials, 1.0, np.clip(high, 0.0, 1.0))
    return np.where(trials > 0, low, np.nan), np.where(trials > 0, high, np.nan)


def wilson(successes, trials, confidence):
    """Wilson score interval: the proportions whose score test does not reject."""
    z = ndtri(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (successes + z**2 / 2) / (trials + z**2)
        half = z / (trials + z**2) * np.sqrt(successes * (trials - successes) / trials + z**2 / 4)
    return _binomial(successes, trials, centre - half, centre + half)


def agresti_coull(successes, trials, confidence):
    """Wald interval around the Wilson centre, with z**2 added trials; its own bounds at 0 and n
    successes (clipped to [0, 1]), not 0 and 1."""
    z = ndtri(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = trials + z**2
        p = (successes + z**2 / 2) / n
        half = z * np.sqrt(p * (1 - p) / n)
    defined = trials > 0
    return np.where(defined, np.clip(p - half, 0.0, 1.0), np.nan), np.where(defined, np.clip(p + half, 0.0, 1.0), np.nan)


def jeffreys(successes, trials, confidence):
    """Equal-tailed interval of the Beta(1/2, 1/2) prior's posterior; 0 and 1 at the extremes."""
    alpha = 1 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        low = betaincinv(successes + 0.5, trials - successes + 0.5, alpha / 2)
        high = betaincinv(successes + 0.5, trials - successes + 0.5, 1 - alpha / 2)
    return _binomial(successes, trials, low, high)


def rate_percentile(cells, boot_cells, confidence):
    points, boots = _rates(cells), _rates(boot_cells)
    return {r: (points[r], *percentile_interval(boots[r], confidence)) for r in RATES}


def _counted(interval):
    def method(cells, boot_cells, confidence):
        points = _rates(cells)
        return {r: (points[r], *interval(k, n, confidence)) for r, (k, n) in _rate_counts(cells).items()}
    return method


RATE_METHODS = {"percentile": rate_percentile, "clopper-pearson": _counted(clopper_pearson_interval),
                "wilson": _counted(wilson), "agresti-coull": _counted(agresti_coull), "jeffreys": _counted(jeffreys)}


def simulate(scenario: Scenario, methods, n_rep: int, n_boot: int, seed: int,
             confidence: float = 0.95, chunk: int = 100, rate_methods=()) -> dict:
    """Per method and aggregate: boolean arrays over replicates of covered (low <= true <= high),
    above (true > high) and below (true < low), plus the estimates. Per rate method and rate,
    under "group_rates": (n_rep, groups) arrays of covered, above and below (all False where the
    rate is undefined), defined (a non-empty denominator), trials (the denominator) and width
    (high - low, NaN where undefined)."""
    rng = np.random.default_rng(seed)
    p = scenario.cell_probabilities()
    sizes = np.asarray(scenario.sizes)
    n, groups = int(sizes.sum()), len(sizes)
    truth = scenario.truth()
    parts: dict = {name: {m: {"covered": [], "above": [], "below": [], "estimate": []} for m in AGGREGATE_METRICS}
                   for name in methods}
    keys = ("covered", "above", "below", "defined", "trials", "width")
    rate_parts: dict = {name: {r: {k: [] for k in keys} for r in RATES} for name in rate_methods}
    done = 0
    while done < n_rep:
        size = min(chunk, n_rep - done)
        cells = rng.multinomial(sizes[None, :], p[None], size=(size, groups)).astype(np.float64)
        boot = rng.multinomial(n, cells.reshape(size, groups * 4) / n, size=(n_boot, size))
        boot = boot.reshape(n_boot, size, groups, 4).astype(np.float64)
        for name in methods:
            for m, (point, low, high) in METHODS[name](cells, boot, confidence).items():
                t = truth[m]
                parts[name][m]["covered"].append((low <= t) & (t <= high))
                parts[name][m]["above"].append(t > high)
                parts[name][m]["below"].append(t < low)
                parts[name][m]["estimate"].append(point)
        counts = _rate_counts(cells)
        for name in rate_methods:
            for r, (point, low, high) in RATE_METHODS[name](cells, boot, confidence).items():
                t, trials = truth[r], counts[r][1]
                got = rate_parts[name][r]
                got["covered"].append((low <= t) & (t <= high))
                got["above"].append(t > high)
                got["below"].append(t < low)
                got["defined"].append(trials > 0)
                got["trials"].append(trials)
                got["width"].append(high - low)
        done += size
    out = {name: {m: {k: np.concatenate(v) for k, v in parts[name][m].items()} for m in AGGREGATE_METRICS}
           for name in methods}
    out["group_rates"] = {name: {r: {k: np.concatenate(v) for k, v in rate_parts[name][r].items()} for r in RATES}
                          for name in rate_methods}
    return out


# Expected calibration error (the performance check's, 15 equal-width bins). A calibration
# scenario fixes a binary classifier's distribution of confidence (max class probability) on a
# grid of 50 levels 0.505, 0.515, ..., 0.995, weights rising as exp(4 * confidence) (most rows
# confident), and its accuracy at each level, 0.5 + (1 - shrink) * (confidence - 0.5): calibrated
# at shrink 0, overconfident above. A row is a cell (level, correct or wrong); as for the groups'
# confusion cells, a replicate draws the n rows' cells from their multinomial and a resample from
# Multinomial(n, counts / n), the distribution of the cell sums of the check's row resampling.
CONFIDENCE_LEVELS = 0.505 + 0.01 * np.arange(50)


@dataclass(frozen=True)
class CalibrationScenario:
    name: str
    rows: int
    shrink: float
    n_bins: int = 15

    def cell_probabilities(self) -> np.ndarray:
        """(levels, 2) probabilities of a correct and a wrong prediction at each confidence level."""
        weight = np.exp(4 * CONFIDENCE_LEVELS)
        weight /= weight.sum()
        accuracy = 0.5 + (1 - self.shrink) * (CONFIDENCE_LEVELS - 0.5)
        return np.stack([weight * accuracy, weight * (1 - accuracy)], axis=1)

    def truth(self) -> float:
        """The population ECE with the check's binning: the sum over bins of
        |P(correct, bin) - E[confidence; bin]|, exact from the cell probabilities, i.e. the value
        of ``calibration_error`` on the expected cell shares (the plug-in's limit as rows grow)."""
        return float(calibration_error(self.cell_probabilities(), self.n_bins))


def calibration_error(cells: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """ECE of (..., levels, 2) cell counts (or probabilities): what ``expected_calibration_error``
    gives on the rows, through the check's own binning."""
    onehot = np.eye(n_bins)[calibration_bins(CONFIDENCE_LEVELS, n_bins)]  # (levels, bins)
    correct = cells[..., 0] @ onehot
    confidence = (cells.sum(axis=-1) * CONFIDENCE_LEVELS) @ onehot
    return np.abs(correct - confidence).sum(axis=-1) / cells.sum(axis=(-2, -1))


def calibration_percentile(estimate, samples, confidence):
    return percentile_interval(samples, confidence)


def calibration_debiased(estimate, samples, confidence):
    return calibration_interval(samples, estimate, confidence)


CALIBRATION_METHODS = {"percentile": calibration_percentile, "debiased": calibration_debiased}

# Calibrated, mildly (true ECE 0.0148) and clearly (0.0525) overconfident, on a digits-sized split
# (450 rows), 2,000 rows and the Adult test split (16,281 rows).
CALIBRATION_SCENARIOS = tuple(
    CalibrationScenario(f"{rows:,} rows, {label}", rows, shrink)
    for label, shrink in (("calibrated", 0.0), ("mildly overconfident", 0.045), ("clearly overconfident", 0.16))
    for rows in (450, 2000, 16281)
)


def simulate_calibration(scenario: CalibrationScenario, methods, n_rep: int, n_boot: int, seed: int,
                         confidence: float = 0.95, chunk: int = 100) -> dict:
    """Per method: boolean arrays over replicates of covered, above (true > ci_high) and below
    (true < ci_low), plus "estimate" (the plug-in ECE per replicate)."""
    rng = np.random.default_rng(seed)
    p = scenario.cell_probabilities()
    n, truth = scenario.rows, scenario.truth()
    parts: dict = {name: {k: [] for k in ("covered", "above", "below")} for name in methods}
    estimates = []
    done = 0
    while done < n_rep:
        size = min(chunk, n_rep - done)
        cells = rng.multinomial(n, p.ravel(), size=size).astype(np.float64)
        boot = rng.multinomial(n, cells / n, size=(n_boot, size)).astype(np.float64)
        estimate = calibration_error(cells.reshape(size, *p.shape), scenario.n_bins)
        samples = calibration_error(boot.reshape(n_boot, size, *p.shape), scenario.n_bins)
        estimates.append(estimate)
        for name in methods:
            low, high = CALIBRATION_METHODS[name](estimate, samples, confidence)
            parts[name]["covered"].append((low <= truth) & (truth <= high))
            parts[name]["above"].append(truth > high)
            parts[name]["below"].append(truth < low)
        done += size
    out = {name: {k: np.concatenate(v) for k, v in parts[name].items()} for name in methods}
    out["estimate"] = np.concatenate(estimates)
    return out


def benchmark_arguments(description: str, methods, per: str = "{R}"):
    """The coverage benchmarks' common options (``--replicates``, ``--n-boot``, ``--seed``,
    ``--methods``), parsed; prints the header that says what the Monte Carlo errors are.
    ``per`` names the denominator of a coverage's standard error."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(methods), choices=list(methods))
    args = parser.parse_args()
    R = args.replicates
    print(f"replicates {R}, n_boot {args.n_boot}, confidence 0.95; "
          f"coverage +- Monte Carlo standard error sqrt(p(1 - p) / {per.format(R=R)}); "
          f"a miss rate near 0.025 has standard error {np.sqrt(0.025 * 0.975 / R):.4f}")
    return args
