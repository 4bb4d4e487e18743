"""Epoch time of DP-SGD over plain training, same model and data, measured in one run.

The default tabular model (MLP in-256-256-2 on Adult, 10% of the labels, batch 256) trained
plain and under DP-SGD as govssl trains it (Poisson batches, one-pass per-example clipping, noise
and accounting by Opacus's optimizer), and, for reference, with Opacus's own engine: ghost
clipping (``--ghost``) and per-sample hooks (``--hooks``). Prints seconds per epoch (median of
the timed epochs; the modes take turns, one epoch each) and the ratios to plain. ``--data digits``
times the image plan's CNN (audits/digits-simclr.yaml) on the digits training images instead.

    python benchmarks/bench_dp_overhead.py [--data adult|digits] [--epochs 10] [--threads 1] [--batch-size 256]
                                           [--ghost] [--hooks] [--utility]

``--utility`` also trains the demo plan (audits/adult-income.yaml) with and without DP and
prints both test accuracies.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


def _data(dataset: str):
    """(X, y, Architecture) of the labelled rows the demo plan (adult) or the image plan
    (digits: audits/digits-simclr.yaml, all training images) fine-tunes on."""
    from govssl.data import load
    from govssl.plan import load_plan
    from govssl.train import label_subset
    from govssl.train._trainer import _architecture

    plan = load_plan(REPO / "audits" / ("adult-income.yaml" if dataset == "adult" else "digits-simclr.yaml"))
    data = load(plan)
    rows = (label_subset(data.y_train, plan.training.finetune.label_fraction, plan.seed) if dataset == "adult"
            else slice(None))
    X = torch.as_tensor(data.X_train[rows], dtype=torch.float32)
    y = torch.as_tensor(data.y_train[rows], dtype=torch.long)
    arch = _architecture(plan.training, data)
    arch["dropout"] = 0.0
    return X, y, arch


def _epoch_runner(X, y, mode: str, epochs: int, batch_size: int, arch):
    """A function that trains one epoch in ``mode``. "plain" and "govssl" run govssl's training
    loop (``train/_loop.py``) as the trainer does; "ghost" and "hooks" run Opacus's own engine,
    Poisson loader and the usual loop, for reference."""
    from govssl.plan import DPSpec
    from govssl.progress import NullProgress
    from govssl.train._dp import make_private, quiet_opacus
    from govssl.train._loop import batches, train_epochs
    from govssl.train.models import build_classifier

    torch.manual_seed(0)
    model = build_classifier(arch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    n_batches = -(-len(X) // batch_size)
    quiet_opacus()
    model.train()
    if mode in ("plain", "govssl"):
        private = None
        if mode == "govssl":
            spec = DPSpec(enabled=True, noise_multiplier=1.0, max_grad_norm=1.0)
            private = make_private(model, optimizer, loss_fn, len(X), batch_size, epochs, spec, generator)
            model, optimizer, loss_fn = private.model, private.optimizer, private.criterion
        return lambda: train_epochs(
            optimizer, 1, lambda: private.batches if private else batches(len(X), batch_size, generator),
            lambda idx: loss_fn(model(X[idx]), y[idx]), NullProgress(), "", n_batches, private=private)

    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    engine = PrivacyEngine(accountant="rdp")
    extra = dict(criterion=loss_fn, grad_sample_mode="ghost") if mode == "ghost" else {}
    out = engine.make_private(
        module=model, optimizer=optimizer, noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=True,
        data_loader=DataLoader(TensorDataset(X, y), batch_size=batch_size, generator=generator), **extra,
    )
    model, optimizer, loader = out[0], out[1], out[-1]
    criterion = out[2] if mode == "ghost" else loss_fn

    def epoch():
        for xb, yb in loader:
            if len(xb) == 0:
                continue
            loss = criterion(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return epoch


def _epoch_times(X, y, modes: list[str], epochs: int, batch_size: int, arch) -> dict[str, list[float]]:
    """Seconds per epoch of each mode. The modes take turns, one epoch each, so that a change in
    the machine's speed (other processes, a shared host) falls on all of them alike."""
    runners = {mode: _epoch_runner(X, y, mode, epochs, batch_size, arch) for mode in modes}
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for round_ in range(epochs + 1):  # the first round warms up and is not timed
        for mode, run in runners.items():
            started = time.perf_counter()
            run()
            if round_:
                times[mode].append(time.perf_counter() - started)
    return times


def _utility() -> None:
    import yaml

    from govssl.data import load
    from govssl.plan import AuditPlan
    from govssl.progress import NullProgress
    from govssl.train import fit

    raw = yaml.safe_load((REPO / "audits" / "adult-income.yaml").read_text())
    out = {}
    for dp in (True, False):
        raw["training"]["dp"]["enabled"] = dp
        raw["training"]["baseline"] = False
        plan = AuditPlan.model_validate(raw)
        data = load(plan)
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            result = fit(plan, data, Path(folder), NullProgress())
        out[dp] = float((result.predict_proba(data.X_test).argmax(1) == data.y_test).mean())
        eps = f"epsilon {result.record.dp['epsilon']:.3f}" if dp else "no DP"
        print(f"demo recipe, {eps}: test accuracy {out[dp]:.4f}")
    print(f"accuracy cost of DP: {100 * (out[False] - out[True]):.2f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["adult", "digits"], default="adult",
                        help="adult: the default tabular model; digits: the CNN of audits/digits-simclr.yaml")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    # one thread by default: on a busy machine, several threads per process spin and wait, and the
    # epoch times of both modes swing by 10x
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--ghost", action="store_true", help="also time Opacus's engine with ghost clipping")
    parser.add_argument("--hooks", action="store_true", help="also time Opacus's engine with per-sample hooks")
    parser.add_argument("--utility", action="store_true", help="also compare the demo's accuracy with and without DP")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y, arch = _data(args.data)
    print(f"model {arch.text}; {len(X)} rows, batch {args.batch_size}, "
          f"{args.epochs} timed epochs, torch threads {torch.get_num_threads()}")
    modes = ["plain", "govssl"] + (["ghost"] if args.ghost else []) + (["hooks"] if args.hooks else [])
    medians = {}
    for mode, times in _epoch_times(X, y, modes, args.epochs, args.batch_size, arch).items():
        medians[mode] = statistics.median(times)
        print(f"{mode:>6}: {medians[mode]:.4f} s/epoch (min {min(times):.4f}, max {max(times):.4f})")
    for mode in modes[1:]:
        print(f"ratio {mode} / plain: {medians[mode] / medians['plain']:.2f}")
    if args.utility:
        _utility()


if __name__ == "__main__":
    main()
