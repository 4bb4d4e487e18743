"""Training time on 2 processes (torch.distributed, gloo) against 1, measured in one run.

Trains a plan's model (default: the demo, audits/adult-income.yaml: VIME pretraining, fine-tuning
and the temperature under DP-SGD, and the supervised-only baseline) as ``govssl audit`` does, on
1 process and on ``--nproc`` processes (default 2), taking turns for ``--rounds`` rounds so that a
change in the machine's load falls on both alike. Each process trains on one intra-op thread
(govssl's fixed setting). Prints, for each setting, the wall time of the training (for several
processes: starting them, each loading the data, training, handing back the weights), the
training time rank 0 measured inside ``fit``, the epsilon, and the ratio of the wall times
(the speed-up). The load average is printed too: on a shared machine it bounds what the figures
can show.

    python benchmarks/bench_distributed.py [--plan audits/adult-income.yaml] [--nproc 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _train(plan, data, nproc: int) -> tuple[float, float, float | None, str]:
    """(wall seconds, seconds inside fit on rank 0, epsilon, model sha256) of one training."""
    from govssl.progress import NullProgress
    from govssl.train import fit

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = fit(plan, data, Path(folder), NullProgress(), nproc=nproc)
        wall = time.perf_counter() - started
    record = result.record
    return wall, record.seconds, record.dp["epsilon"] if record.dp else None, record.model_sha256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, default=REPO / "audits" / "adult-income.yaml")
    parser.add_argument("--nproc", type=int, default=2, help="processes of the distributed setting")
    parser.add_argument("--rounds", type=int, default=1, help="trainings per setting")
    args = parser.parse_args()

    import warnings

    import torch

    from govssl.data import load
    from govssl.plan import load_plan
    from govssl.train._dp import quiet_opacus

    warnings.simplefilter("ignore", UserWarning)
    quiet_opacus()
    plan = load_plan(args.plan)
    data = load(plan)
    print(f"plan {plan.name}: {len(data.X_train):,} training rows; torch {torch.__version__}; "
          f"{os.cpu_count()} cores; load average before {os.getloadavg()[0]:.1f}; {args.rounds} round(s)")
    settings = {"1 process": 1, f"{args.nproc} processes": args.nproc}
    walls: dict[str, list[float]] = {name: [] for name in settings}
    inner: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, nproc in settings.items():
            wall, seconds, epsilon, sha = _train(plan, data, nproc)
            walls[name].append(wall)
            inner[name].append(seconds)
            print(f"{name:>12}: {wall:.1f} s wall ({seconds:.1f} s training on rank 0), epsilon "
                  f"{epsilon if epsilon is None else round(epsilon, 6)}, sha256 {sha[:12]}, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
    one, many = (statistics.median(walls[name]) for name in settings)
    one_in, many_in = (statistics.median(inner[name]) for name in settings)
    print(f"speed-up {args.nproc} processes over 1: {one / many:.2f} (wall), {one_in / many_in:.2f} (training on rank 0)")


if __name__ == "__main__":
    main()
