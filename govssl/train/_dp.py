"""DP-SGD through Opacus (Abadi et al. 2016, "Deep Learning with Differential Privacy").

Opacus samples batches by Poisson sampling, clips per example and accounts the spent privacy.
When pretraining reads the private rows too, both phases feed one accountant: the pretraining
history is composed with the fine-tuning steps, and the noise of each phase is calibrated so
that the COMPOSED epsilon meets the target (:func:`calibrate_phases`). The only home of opacus.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["make_private", "dp_record_of", "unwrap", "quiet_opacus", "calibrate_phases", "composed_epsilon",
           "poisson_schedule"]


def poisson_schedule(n: int, batch_size: int, epochs: int) -> tuple[float, int]:
    """(sample rate, steps) of Opacus's Poisson loader: rate 1 / batches per epoch, one step per batch."""
    batches = max(1, -(-n // batch_size))
    return 1.0 / batches, epochs * batches


def composed_epsilon(history: list, delta: float, accountant: str) -> float:
    """Epsilon of the composition of ``history`` [(noise, sample rate, steps), ...] by Opacus."""
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [tuple(h) for h in history]
    return float(acc.get_epsilon(delta=delta))


def _smallest_noise(target: float, delta: float, accountant: str, prefix: list, rate: float, steps: int,
                    tolerance: float = 0.01) -> float:
    """The smallest noise (to ``tolerance`` in epsilon) whose phase, composed after ``prefix``,
    stays within ``target``; the bisection keeps the side at or under the target."""
    low, high = 0.0, 1.0
    eps_high = composed_epsilon(prefix + [(high, rate, steps)], delta, accountant)
    while eps_high > target:
        low, high = high, 2 * high
        if high > 1e6:
            raise ValueError("the privacy budget is too low for this many steps")
        eps_high = composed_epsilon(prefix + [(high, rate, steps)], delta, accountant)
    while target - eps_high > tolerance and high - low > 1e-6:
        mid = (low + high) / 2
        eps = composed_epsilon(prefix + [(mid, rate, steps)], delta, accountant)
        if eps <= target:
            high, eps_high = mid, eps
        else:
            low = mid
    return high


def calibrate_phases(dp, phases: list[tuple[float, int]]) -> list[float]:
    """Noise multipliers for the phases [(sample rate, steps), ...] in training order.

    One phase: the noise that reaches ``dp.target_epsilon``. Two (pretraining, then fine-tuning):
    pretraining gets the noise that reaches ``dp.pretrain_share * target`` on its own; fine-tuning
    the smallest noise that keeps the composition of both within the target. A fixed
    ``dp.noise_multiplier`` is used for every phase instead.
    """
    if dp.noise_multiplier is not None:
        return [float(dp.noise_multiplier)] * len(phases)
    targets = [dp.target_epsilon] if len(phases) == 1 else [dp.target_epsilon * dp.pretrain_share, dp.target_epsilon]
    noises, prefix = [], []
    for (rate, steps), target in zip(phases, targets):
        sigma = _smallest_noise(target, dp.delta, dp.accountant, prefix, rate, steps)
        noises.append(sigma)
        prefix = prefix + [(sigma, rate, steps)]
    return noises


def quiet_opacus() -> None:
    """Silence Opacus's advice that is not evidence: the insecure-RNG notice (noise comes from
    torch's seeded generator on purpose, for reproducible runs), the alpha-range hint (the bound is
    valid, only possibly loose) and the backward-hook notice for frozen inputs."""
    import warnings

    for message in ("Secure RNG turned off", "Optimal order is the largest alpha", "Full backward hook is firing"):
        warnings.filterwarnings("ignore", message=message)


def make_private(model, optimizer, criterion, X: torch.Tensor, y: torch.Tensor, batch_size: int, epochs: int, dp, generator,
                 noise_multiplier: float | None = None, prior_history: list | None = None):
    """Wrap model, optimizer, loss and data for DP-SGD: with ``noise_multiplier`` if given (from
    :func:`calibrate_phases`), else calibrated by Opacus to the plan's target epsilon.
    ``prior_history`` (an earlier phase's steps) goes first into the same accountant, so that
    the epsilon it reports is the composition of all phases.

    Per-example clipping uses ghost clipping (Li et al. 2022, "Large Language Models Can Be
    Strong Differentially Private Learners"; Bu et al. 2023): the per-example gradient norms come
    from activations and output gradients without materialising per-example gradients, then a
    second backward pass applies the clipped weights. Same guarantee as flat clipping, and several
    times faster than Opacus's hooks on the default MLP (`python benchmarks/bench_dp_overhead.py
    --hooks` prints both).
    """
    from opacus import PrivacyEngine

    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=False, generator=generator)
    engine = PrivacyEngine(accountant=dp.accountant)
    common = dict(module=model, optimizer=optimizer, criterion=criterion, data_loader=loader,
                  max_grad_norm=dp.max_grad_norm, poisson_sampling=True, grad_sample_mode="ghost")
    if noise_multiplier is None:
        noise_multiplier = dp.noise_multiplier
    if noise_multiplier is not None:
        model, optimizer, criterion, loader = engine.make_private(noise_multiplier=noise_multiplier, **common)
    else:
        model, optimizer, criterion, loader = engine.make_private_with_epsilon(
            target_epsilon=dp.target_epsilon, target_delta=dp.delta, epochs=epochs, **common
        )
    if prior_history:
        engine.accountant.history = [tuple(h) for h in prior_history]
    return model, optimizer, criterion, loader, engine


def dp_record_of(engine, optimizer, dp, sample_rate: float) -> dict:
    """What an auditor needs to recompute epsilon: the accountant's history and the parameters."""
    history = [[float(noise), float(rate), int(steps)] for noise, rate, steps in engine.accountant.history]
    return {
        # the composition of every phase in the history (pretraining first, if it was private)
        "epsilon": float(engine.get_epsilon(dp.delta)),
        "target_epsilon": float(dp.target_epsilon) if dp.noise_multiplier is None else None,
        "delta": float(dp.delta),
        "accountant": dp.accountant,
        "noise_multiplier": float(optimizer.noise_multiplier),
        "sample_rate": float(history[-1][1]) if history else float(sample_rate),
        "steps": int(sum(h[2] for h in history)),
        "max_grad_norm": float(dp.max_grad_norm),
        "poisson_sampling": True,
        "clipping": "flat, per example (ghost clipping)",
        "secure_rng": False,  # noise from torch's seeded generator, so a run can be reproduced
        "history": history,
    }


def unwrap(model):
    """The module inside Opacus's GradSampleModule."""
    return getattr(model, "_module", model)
