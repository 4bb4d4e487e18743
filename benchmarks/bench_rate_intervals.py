"""Coverage of 95% intervals for the fairness check's per-group rates, on synthetic groups with known truth.

For each rate scenario of ``tests/_gap_simulation.py`` (six Adult-like groups of 3,000 down to
50 rows; Adult-like rates, rates near 0 and 1, few positives), draws replicate data sets,
bootstraps each like the fairness check and prints, per rate, group and interval method, the
share of data sets whose interval covers the group's true rate, with its Monte Carlo standard
error, and the one-sided misses: "above" is P(true > ci_high), "below" is P(true < ci_low);
2.5% each is nominal. Shares count the data sets where the rate is defined (a TPR needs a
positive in the group); "defined" says in how many it was, "denominator" is the mean number of
trials (rows, positives or negatives) behind the rate, "width" the mean interval width. Methods:
the bootstrap percentile interval, and the Wilson, Clopper-Pearson, Agresti-Coull and Jeffreys
intervals of the group's counts. Then, per method, the worst coverage and the largest one-sided
misses over all scenarios, rates and groups. Last, the same for model-wide accuracy on whole test
splits of 450 to 16,281 rows (the performance check bootstraps the whole split, one group).

    python benchmarks/bench_rate_intervals.py [--replicates 2000] [--n-boot 1000] [--methods ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: the shared simulation
from tests._gap_simulation import RATE_METHODS, RATE_SCENARIOS, RATES, SPLIT_SCENARIOS, simulate, benchmark_arguments  # noqa: E402

SHORT = {"selection_rate": "selection", "true_positive_rate": "TPR", "false_positive_rate": "FPR",
         "accuracy": "accuracy"}


def summary(r: dict, group: int) -> dict:
    """Coverage, its Monte Carlo standard error, one-sided misses and mean width over the data
    sets where the rate is defined."""
    defined = r["defined"][:, group]
    m = int(defined.sum())
    share = lambda key: float(r[key][defined, group].mean()) if m else float("nan")  # noqa: E731
    p = share("covered")
    return {"covered": p, "se": np.sqrt(p * (1 - p) / m) if m else float("nan"), "above": share("above"),
            "below": share("below"), "width": float(np.nanmean(r["width"][defined, group])) if m else float("nan"),
            "defined": defined.mean(), "trials": float(r["trials"][:, group].mean())}


def table(scenarios, rates, methods, R: int, n_boot: int, seed: int, worst: dict) -> None:
    print(f"  {'rate':<9} {'rows':>6} {'true':>6} {'denominator':>11} {'defined':>7}  "
          f"{'method':<15} {'coverage':>15} {'above':>6} {'below':>6} {'width':>6}")
    for i, scenario in enumerate(scenarios):
        started = time.perf_counter()
        result = simulate(scenario, [], R, n_boot, seed=seed + i, rate_methods=methods)["group_rates"]
        seconds = time.perf_counter() - started
        truth = scenario.truth()
        print(f"{scenario.name} (rows {', '.join(map(str, scenario.sizes))}; {seconds:.0f} s)")
        for rate in rates:
            for g, rows in enumerate(scenario.sizes):
                for j, name in enumerate(methods):
                    s = summary(result[name][rate], g)
                    head = (f"{SHORT[rate]:<9} {rows:6d} {truth[rate][g]:6.3f} {s['trials']:11.1f} {s['defined']:7.3f}"
                            if j == 0 else " " * 43)
                    print(f"  {head}  {name:<15} {s['covered']:7.3f} +- {s['se']:.3f} "
                          f"{s['above']:6.3f} {s['below']:6.3f} {s['width']:6.3f}")
                    where = f"{scenario.name}, {SHORT[rate]}" + (f", {rows} rows" if len(scenario.sizes) > 1 else "")
                    w = worst[name]
                    if s["covered"] < w["covered"][0]:
                        w["covered"] = (s["covered"], where)
                    for side in ("above", "below"):
                        if s[side] > w[side][0]:
                            w[side] = (s[side], where)


def main() -> None:
    args = benchmark_arguments(__doc__.splitlines()[0], RATE_METHODS, per="defined data sets")
    R = args.replicates
    new = lambda: {name: {"covered": (1.0, ""), "above": (0.0, ""), "below": (0.0, "")} for name in args.methods}  # noqa: E731
    worst = new()
    print("\nper-group rates")
    table(RATE_SCENARIOS, RATES, args.methods, R, args.n_boot, args.seed, worst)
    print("\nper method, over every scenario, rate and group: lowest coverage, largest one-sided misses")
    show(worst)
    worst = new()
    print("\nmodel-wide accuracy (the performance check's interval)")
    table(SPLIT_SCENARIOS, ("accuracy",), args.methods, R, args.n_boot, args.seed + len(RATE_SCENARIOS), worst)
    print("\nper method, over every split: lowest coverage, largest one-sided misses")
    show(worst)


def show(worst: dict) -> None:
    for name, w in worst.items():
        print(f"  {name:<15} coverage {w['covered'][0]:.3f} ({w['covered'][1]})")
        print(f"  {'':<15} above    {w['above'][0]:.3f} ({w['above'][1]})")
        print(f"  {'':<15} below    {w['below'][0]:.3f} ({w['below'][1]})")


if __name__ == "__main__":
    main()
