"""Self-supervised pretraining + linear probe against the supervised-only baseline.

For each dataset (Adult: SCARF on the demo's encoder, linear probe; digits: the recipe of
audits/digits-simclr.yaml), label fraction and seed, the trainer trains both models (no DP) and
both are scored on the test split. Prints mean and standard deviation over the seeds of each
accuracy and of the gain (SSL minus supervised), in points.

    python benchmarks/bench_label_efficiency.py [--datasets adult digits] [--fractions 0.01 0.1 1.0] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]

RECIPES = {
    # the demo plan's data and encoder, without DP, SCARF pretraining (allowed without DP), linear probe
    "adult": ("adult-income.yaml", {"pretrain": {"method": "scarf", "epochs": 5, "batch_size": 256,
                                                 "corruption_rate": 0.6, "temperature": 1.0},
                                    "finetune": {"mode": "linear_probe", "epochs": 100, "batch_size": 64, "lr": 0.01}}),
    "digits": ("digits-simclr.yaml", {}),
}


def _plan(dataset: str, fraction: float, seed: int):
    from govssl.plan import AuditPlan

    name, overrides = RECIPES[dataset]
    raw = yaml.safe_load((REPO / "audits" / name).read_text())
    for key, value in overrides.items():
        raw["training"].setdefault(key, {}).update(value)
    raw["training"]["dp"] = {"enabled": False}
    raw["training"]["baseline"] = True
    raw["training"]["finetune"]["label_fraction"] = fraction
    if dataset == "adult" and fraction > 0.01:
        # more labels, larger batches and fewer epochs: about the same number of steps as at 1%
        batch, epochs = (256, 50) if fraction <= 0.1 else (1024, 20)
        raw["training"]["finetune"].update(batch_size=batch, epochs=epochs)
    raw["seed"] = seed
    raw["checks"] = {}
    return AuditPlan.model_validate(raw)


def main() -> None:
    from govssl.data import load
    from govssl.progress import NullProgress
    from govssl.train import fit
    from govssl.train.models import predict_proba

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["adult", "digits"], choices=sorted(RECIPES))
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.1, 1.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    print("dataset  labels   seed  ssl+probe  supervised   gain (points)")
    for dataset in args.datasets:
        for fraction in args.fractions:
            gains, ssl, sup = [], [], []
            for seed in args.seeds:
                plan = _plan(dataset, fraction, seed)
                data = load(plan)
                started = time.perf_counter()
                with tempfile.TemporaryDirectory() as folder:
                    result = fit(plan, data, Path(folder), NullProgress())
                a = float((result.predict_proba(data.X_test).argmax(1) == data.y_test).mean())
                b = float((predict_proba(result.baseline, data.X_test).argmax(1) == data.y_test).mean())
                ssl.append(a), sup.append(b), gains.append(100 * (a - b))
                print(f"{dataset:8} {fraction:6.0%} {seed:6d}  {a:9.4f}  {b:10.4f}  {100 * (a - b):+8.2f}"
                      f"   ({time.perf_counter() - started:.0f} s)", flush=True)
            sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
            print(f"{dataset:8} {fraction:6.0%}   mean  {np.mean(ssl):9.4f}  {np.mean(sup):10.4f}  "
                  f"{np.mean(gains):+8.2f}  (sd: ssl {sd(ssl):.4f}, supervised {sd(sup):.4f}, gain {sd(gains):.2f})",
                  flush=True)


if __name__ == "__main__":
    main()
