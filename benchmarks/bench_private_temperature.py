"""The private temperature fit's settings, against the exact (non-private) temperature.

Trains a plan's model (default: the demo, audits/adult-income.yaml, under DP), takes the
classifier's logits on its held-out calibration rows and on the test split, and fits the
temperature by DP-SGD (``govssl.train._dp.fit_scale_private``) at the plan's calibration budget
(``epsilon_share * target_epsilon`` alone, full batches) for each setting of steps, step size and
clipping norm, over ``--seeds`` noise draws. Prints the mean and spread of the fitted inverse
temperature and the test ECE (mean, max), next to the test ECE at temperature 1 and at the exact
temperature of the held-out rows. govssl's settings are ``PRIVATE_STEPS``, ``PRIVATE_LR`` and
``PRIVATE_MAX_GRAD_NORM`` in ``govssl/train/_calibrate.py``.

    python benchmarks/bench_private_temperature.py [--plan audits/adult-income.yaml] [--seeds 16]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default=str(REPO / "audits" / "adult-income.yaml"))
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 60, 120])
    parser.add_argument("--lr", type=float, nargs="+", default=[0.05, 0.1, 0.3, 1.0])
    parser.add_argument("--clip", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)

    from govssl.checks.performance import expected_calibration_error
    from govssl.data import load
    from govssl.plan import load_plan
    from govssl.progress import NullProgress
    from govssl.train import fit
    from govssl.train._calibrate import SCALE_BOUNDS, fit_scale, logits_of
    from govssl.train._dp import _smallest_noise, fit_scale_private

    plan = load_plan(args.plan)
    dp = plan.training.dp
    if not dp.enabled or plan.training.calibration.method != "temperature":
        raise SystemExit(f"{args.plan}: the plan must train under DP with training.calibration.method: temperature")
    data = load(plan)
    with tempfile.TemporaryDirectory() as out:
        result = fit(plan, data, Path(out), NullProgress())
    temperature = result.record.calibration["temperature"]
    held = result.calibration_rows
    # the classifier's own logits: the released model's divided by 1 / temperature
    z = logits_of(result.model, torch.as_tensor(data.X_train[held], dtype=torch.float32)) * temperature
    y = torch.as_tensor(data.y_train[held], dtype=torch.long)
    z_test = logits_of(result.model, torch.as_tensor(data.X_test, dtype=torch.float32)) * temperature

    def ece(scale: float) -> float:
        return expected_calibration_error(data.y_test, torch.softmax(z_test * scale, dim=1).numpy())

    epsilon = dp.target_epsilon * plan.training.calibration.epsilon_share
    exact = fit_scale(z, y)
    print(f"{len(held)} held-out rows, calibration epsilon {epsilon:g} alone (delta {dp.delta:g}, {dp.accountant})")
    print(f"test ECE at temperature 1: {ece(1.0):.4f}; at the exact temperature {1 / exact:.3f}: {ece(exact):.4f}")
    print(f"{'steps':>5} {'lr':>5} {'clip':>5} {'noise':>7} {'1/T mean':>9} {'sd':>6} {'ECE mean':>9} {'ECE max':>8}")
    for steps, lr, clip in itertools.product(args.steps, args.lr, args.clip):
        noise = _smallest_noise(epsilon, dp.delta, dp.accountant, [], 1.0, steps)
        scales = [fit_scale_private(z, y, dp, noise, clip, len(held), steps, lr, SCALE_BOUNDS,
                                    torch.Generator().manual_seed(seed))[0] for seed in range(args.seeds)]
        eces = [ece(s) for s in scales]
        print(f"{steps:>5} {lr:>5g} {clip:>5g} {noise:>7.1f} {np.mean(scales):>9.3f} {np.std(scales):>6.3f} "
              f"{np.mean(eces):>9.4f} {np.max(eces):>8.4f}", flush=True)


if __name__ == "__main__":
    main()
