"""Coverage of the expected calibration error's 95% bootstrap intervals, with known true ECE.

For each calibration scenario of ``tests/_gap_simulation.py`` (a binary classifier, calibrated,
mildly or clearly overconfident, on test splits of 450, 2,000 and 16,281 rows), draws replicate
test splits, bootstraps each like the performance check and prints, per interval method, the
share of splits whose interval covers the true ECE, with its Monte Carlo standard error, and the
one-sided misses: "above" is P(true > ci_high), the miss of a rule ``max: ... use: ci_high``,
"below" is P(true < ci_low); 2.5% each is nominal. The true ECE is exact: the ECE of the
scenario's cell probabilities with the check's 15 bins (the plug-in's limit). "estimate" is the
mean plug-in ECE. Methods: the performance check's debiased percentile interval and the
percentile interval it used before. ``benchmarks/bench_rate_intervals.py`` does the same for
model-wide accuracy (its last table).

    python benchmarks/bench_calibration_intervals.py [--replicates 2000] [--n-boot 1000]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: the shared simulation
from tests._gap_simulation import CALIBRATION_METHODS, CALIBRATION_SCENARIOS, simulate_calibration, benchmark_arguments  # noqa: E402


def main() -> None:
    args = benchmark_arguments(__doc__.splitlines()[0], CALIBRATION_METHODS)
    R = args.replicates
    print(f"  {'scenario':<36} {'true':>6} {'estimate':>8}  {'method':<11} {'coverage':>15} {'above':>6} {'below':>6}")
    for i, scenario in enumerate(CALIBRATION_SCENARIOS):
        started = time.perf_counter()
        result = simulate_calibration(scenario, args.methods, R, args.n_boot, seed=args.seed + i)
        seconds = time.perf_counter() - started
        for j, name in enumerate(args.methods):
            r = result[name]
            p = float(r["covered"].mean())
            head = (f"{scenario.name:<36} {scenario.truth():6.4f} {result['estimate'].mean():8.4f}"
                    if j == 0 else " " * 52)
            tail = f"  ({seconds:.0f} s)" if j == len(args.methods) - 1 else ""
            print(f"  {head}  {name:<11} {p:7.3f} +- {np.sqrt(p * (1 - p) / R):.3f} "
                  f"{r['above'].mean():6.3f} {r['below'].mean():6.3f}{tail}", flush=True)


if __name__ == "__main__":
    main()
