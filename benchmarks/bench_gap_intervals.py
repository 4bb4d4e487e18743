"""Coverage of the fairness gaps' 95% bootstrap intervals on synthetic groups with known truth.

For each scenario of ``tests/_gap_simulation.py`` (4 and 6 groups of 50 to 3,000 rows; zero,
small and large true gaps), draws replicate data sets, bootstraps each like the fairness check
and prints, per aggregate and interval method, the share of data sets whose interval covers the
true value, with its Monte Carlo standard error, and the one-sided misses: "above" is
P(true > ci_high), "below" is P(true < ci_low); 2.5% each is nominal. Methods: the fairness
check's debiased percentile interval, the plain percentile interval it used before, and the
basic, BC and BCa intervals. ``benchmarks/bench_rate_intervals.py`` does the same for the
per-group rates.

    python benchmarks/bench_gap_intervals.py [--replicates 2000] [--n-boot 1000] [--methods ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: the shared simulation
from tests._gap_simulation import METHODS, SCENARIOS, simulate, benchmark_arguments  # noqa: E402

SHORT = {"demographic_parity_difference": "DP difference", "demographic_parity_ratio": "DP ratio",
         "equalized_odds_difference": "EO difference"}


def main() -> None:
    args = benchmark_arguments(__doc__.splitlines()[0], METHODS)
    R = args.replicates
    for i, scenario in enumerate(SCENARIOS):
        started = time.perf_counter()
        result = simulate(scenario, args.methods, R, args.n_boot, seed=args.seed + i)
        seconds = time.perf_counter() - started
        truth = scenario.truth()
        print(f"\n{scenario.name} (sizes {', '.join(map(str, scenario.sizes))}; {seconds:.0f} s)")
        print(f"  {'aggregate':<14} {'true':>6} {'mean est.':>9}  {'method':<10} {'coverage':>15} {'above':>6} {'below':>6}")
        for metric, short in SHORT.items():
            estimate = result[args.methods[0]][metric]["estimate"].mean()
            for j, name in enumerate(args.methods):
                r = result[name][metric]
                p = r["covered"].mean()
                head = f"{short:<14} {truth[metric]:6.3f} {estimate:9.3f}" if j == 0 else " " * 31
                print(f"  {head}  {name:<10} {p:7.3f} +- {np.sqrt(p * (1 - p) / R):.3f} "
                      f"{r['above'].mean():6.3f} {r['below'].mean():6.3f}")


if __name__ == "__main__":
    main()
