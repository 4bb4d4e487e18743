"""Training time at govssl's fixed torch thread count against torch's default, measured in one run.

Trains a plan's model (default: the demo, audits/adult-income.yaml: VIME pretraining and
fine-tuning, both under DP-SGD) as ``govssl audit`` does, once on ``govssl.train.TRAIN_THREADS``
intra-op threads and once on torch's default for this machine (its core count, or
OMP_NUM_THREADS), and ``--also N`` on N threads. The settings take turns, one training each, so
that a change in the machine's speed (other processes, a shared host) falls on all of them alike.
Prints the seconds of each training (median, min, max), the ratio to the default, and whether the
weights file's sha256 differs between the settings.

    python benchmarks/bench_train_threads.py [--plan audits/adult-income.yaml] [--rounds 3] [--also 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _train(plan, data, threads: int) -> tuple[float, str]:
    """Seconds and model sha256 of one training on ``threads`` intra-op threads."""
    from govssl.progress import NullProgress
    from govssl.train import _trainer

    with tempfile.TemporaryDirectory() as folder, _trainer.fixed_threads(threads):
        started = time.perf_counter()
        result = _trainer._fit(plan, data, Path(folder), NullProgress(), None, threads)
        return time.perf_counter() - started, result.record.model_sha256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, default=REPO / "audits" / "adult-income.yaml")
    parser.add_argument("--rounds", type=int, default=3, help="timed trainings per setting")
    parser.add_argument("--also", type=int, action="append", default=[], help="also time N threads")
    args = parser.parse_args()

    import warnings

    from govssl.data import load
    from govssl.plan import load_plan
    from govssl.train import TRAIN_THREADS
    from govssl.train._dp import quiet_opacus

    warnings.simplefilter("ignore", UserWarning)
    quiet_opacus()
    plan = load_plan(args.plan)
    data = load(plan)
    default = torch.get_num_threads()
    settings = {f"fixed ({TRAIN_THREADS})": TRAIN_THREADS, f"default ({default})": default}
    settings.update({f"{n} threads": n for n in args.also})
    print(f"plan {plan.name}: {len(data.X_train):,} training rows; torch {torch.__version__}, "
          f"{torch.backends.cpu.get_cpu_capability()}; {args.rounds} rounds")
    times: dict[str, list[float]] = {name: [] for name in settings}
    hashes: dict[str, set[str]] = {name: set() for name in settings}
    for _ in range(args.rounds):
        for name, threads in settings.items():
            seconds, sha = _train(plan, data, threads)
            times[name].append(seconds)
            hashes[name].add(sha)
    medians = {name: statistics.median(t) for name, t in times.items()}
    reference = f"default ({default})"
    for name, t in times.items():
        print(f"{name:>12}: {medians[name]:.2f} s (min {min(t):.2f}, max {max(t):.2f}); "
              f"sha256 {', '.join(sorted(h[:12] for h in hashes[name]))}")
    for name in settings:
        if name != reference:
            print(f"ratio {name} / {reference}: {medians[name] / medians[reference]:.2f}")


if __name__ == "__main__":
    main()
