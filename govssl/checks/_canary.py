"""A DP audit in one training run: Steinke, Nasr and Jagielski, "Privacy auditing with one (1)
training run" (NeurIPS 2023).

m canaries each enter the training set independently with probability 1/2; the model is trained
once; the auditor ranks the canaries by a score and guesses "in" for the k best and "out" for
the k worst (abstaining on the rest). For an (eps, delta)-DP training, the number W of correct
guesses among the r = 2k made satisfies (their Theorem 3, the (eps, delta) case)

    P[W >= v] <= f(v) + 2 m delta max_{1 <= i <= v} (f(v - i) - f(v)) / i,
    f(v) = P[Binomial(r, e^eps / (1 + e^eps)) >= v],

so an eps for which the right-hand side is below beta = 1 - confidence is refuted by v correct
guesses; the lower bound reported is the largest eps refuted (their Algorithm 2, by bisection).
The audit runs the test for each k of a fixed grid and reports the k with the largest bound; the
level of each test is beta / (number of k), so that the reported bound holds at the plan's
confidence whichever k is picked (Bonferroni).

Two kinds of canary. Input canaries (:func:`crafted_canaries`) are rows scored by the final
model's loss: a black-box audit, weak for DP-SGD. White-box gradient canaries (the paper's
Section 5; :class:`govssl.train._dp.GradientCanaries`) are clipped gradients ``max_grad_norm *
e_j`` on distinct coordinates, Poisson-sampled into the fine-tuning phase like real rows before
Opacus adds its noise; the auditor reads every privatised gradient, so each canary's score is
the sum of ``max_grad_norm`` per step it was sampled plus Gaussian noise, the mechanism the
accountant analyses. Their bound is for the fine-tuning phase, whose epsilon is at most the
composed epsilon claimed for all private phases: a bound above the claim proves it broken, but
a broken pretraining phase stays unseen.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["p_value", "epsilon_lower_bound", "guess_counts", "audit_scores"]


def _binom_sf(r: int, q: float) -> np.ndarray:
    """f[v] = P[Binomial(r, q) >= v] for v = 0..r+1."""
    from scipy.stats import binom

    v = np.arange(r + 2)
    return binom.sf(v - 1, r, q)


def p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Upper bound on P[W >= v] when the training is (eps, delta)-DP: m canaries, r guesses."""
    if not (0 <= v <= r <= m) or eps < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need 0 <= v <= r <= m, eps >= 0, 0 <= delta <= 1; got m={m}, r={r}, v={v}, "
                         f"eps={eps}, delta={delta}")
    q = 1.0 / (1.0 + math.exp(-eps))
    f = _binom_sf(r, q)
    bound = float(f[v])
    if delta > 0 and v > 0:
        i = np.arange(1, v + 1)
        bound += 2 * m * delta * float(np.max((f[v - i] - f[v]) / i))
    return min(bound, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, beta: float, tolerance: float = 1e-4) -> float:
    """The largest eps whose p-value for v correct out of r guesses is below ``beta`` (0 when none)."""
    if not 0 < beta < 1:
        raise ValueError(f"beta must lie in (0, 1); got {beta}")
    if r == 0 or p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(m, r, v, high, delta) < beta:
        low, high = high, 2 * high
        if high > 1e3:  # every guess right with beta tiny: no finite eps is consistent
            return math.inf
    while high - low > tolerance:
        mid = (low + high) / 2
        if p_value(m, r, v, mid, delta) < beta:
            low = mid
        else:
            high = mid
    return low


def guess_counts(scores: np.ndarray, included: np.ndarray, k: int) -> tuple[int, int]:
    """(guesses, correct): "in" for the k highest scores, "out" for the k lowest (ties broken by
    position, which does not depend on who was included)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    top, bottom = order[:k], order[len(order) - k:]
    included = np.asarray(included, dtype=bool)
    return 2 * k, int(included[top].sum() + (~included[bottom]).sum())


def audit_scores(scores: np.ndarray, included: np.ndarray, ks: list[int], delta: float,
                 confidence: float) -> dict:
    """The canary audit over a grid of k (guesses per side): the best bound, each test at level
    (1 - confidence) / len(ks); and the largest bound this grid could give (every guess right)."""
    m = len(scores)
    ks = sorted({int(k) for k in ks if 1 <= 2 * int(k) <= m})
    if not ks:
        raise ValueError(f"no k in the grid with 1 <= 2k <= m = {m}")
    beta = (1 - confidence) / len(ks)
    per_k = []
    for k in ks:
        r, v = guess_counts(scores, included, k)
        per_k.append({"k": k, "guesses": r, "correct": v, "epsilon": epsilon_lower_bound(m, r, v, delta, beta)})
    best = max(per_k, key=lambda row: (row["epsilon"], -row["k"]))
    ceiling = max(epsilon_lower_bound(m, 2 * k, 2 * k, delta, beta) for k in ks)
    return {"epsilon": best["epsilon"], "k": best["k"], "guesses": best["guesses"], "correct": best["correct"],
            "max_detectable": ceiling, "level_per_k": beta, "grid": per_k}


def crafted_canaries(X_train: np.ndarray, n_classes: int, m: int, scale: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of m crafted outliers: each coordinate drawn from N(0, scale^2) times
    the coordinate's spread in the training rows (1 where it has none), around the rows' mean,
    so that each canary lies far from the data, where mostly its own presence shapes the model;
    each with a label drawn uniformly. Random labels carry no rule the model could learn from the
    included canaries and apply to the others (labels derived from the features did, in trials,
    and halved the audit's power). Drawn before, and independently of, the inclusion draw."""
    rng = np.random.default_rng(seed)
    flat = X_train.reshape(len(X_train), -1).astype(np.float64)
    spread = flat.std(axis=0)
    spread[~(spread > 0)] = 1.0
    X = (rng.standard_normal((m, flat.shape[1])) * scale * spread + flat.mean(axis=0)).astype(np.float32)
    labels = rng.integers(0, n_classes, size=m).astype(np.int64)
    return X.reshape((m,) + X_train.shape[1:]), labels


def label_log_likelihood(model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log p(y | x) under ``model``: minus the per-canary loss (higher = more likely trained on)."""
    import torch

    model.eval()
    with torch.no_grad():
        logits = model(torch.as_tensor(X, dtype=torch.float32))
        logp = torch.log_softmax(logits, dim=1)
    return logp[torch.arange(len(y)), torch.as_tensor(y)].double().numpy()


def train_with_canaries(ctx, X_canary: np.ndarray, y_canary: np.ndarray, included: np.ndarray):
    """One training run with the plan's recipe and DP setting on the rows the released model
    learned labels from plus the included canaries; every row of that run is labelled
    (``label_fraction`` 1), so each included canary enters every private phase. The released
    model is not touched. Returns the trainer's TrainResult."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from govssl.data import load_public
    from govssl.progress import NullProgress
    from govssl.train import fit

    data, plan = ctx.dataset, ctx.plan
    rows = np.asarray(ctx.train.labelled_rows)
    X = np.concatenate([data.X_train[rows], X_canary[included]]).astype(data.X_train.dtype, copy=False)
    y = np.concatenate([np.asarray(data.y_train)[rows], y_canary[included]]).astype(np.asarray(data.y_train).dtype)
    t = plan.training
    training = t.model_copy(update={"finetune": t.finetune.model_copy(update={"label_fraction": 1.0}),
                                    "baseline": False})
    audit_plan = plan.model_copy(update={"training": training})
    copy = dataclasses.replace(data, X_train=X, y_train=y)
    with tempfile.TemporaryDirectory() as folder:
        return fit(audit_plan, copy, Path(folder), ctx.progress or NullProgress(),
                   public_X=load_public(plan, data), calibration_errors=False)


def gradient_canary_room(ctx) -> tuple[int, str]:
    """(coordinates, name) of the largest weight matrix the fine-tuning phase trains: the room
    for white-box gradient canaries (one distinct coordinate each)."""
    model = ctx.train.model
    head_only = ctx.plan.training.finetune.mode == "linear_probe"
    modules = [model[-1]] if head_only else list(model.modules())
    weights = [p for module in modules for p in module.parameters(recurse=False) if p.dim() >= 2]
    largest = max((p.numel() for p in weights), default=0)
    return largest, "the head's weight matrix" if head_only else "the largest weight matrix"


def train_with_gradient_canaries(ctx, included: np.ndarray, seed: int):
    """One training run with the plan's recipe and DP setting, on the same rows as the released
    model, whose fine-tuning phase carries the ``included`` white-box gradient canaries (see
    :class:`govssl.train._dp.GradientCanaries`); without DP that phase is clipped SGD without
    noise. The released model is not touched. Returns (TrainResult, the canaries' record, whether
    the run started from the released model's pretrained encoder)."""
    import tempfile
    from pathlib import Path

    from govssl.data import load_public
    from govssl.progress import NullProgress
    from govssl.train import fit
    from govssl.train._dp import GradientCanaries

    plan = ctx.plan
    audit_plan = plan.model_copy(update={"training": plan.training.model_copy(update={"baseline": False})})
    canaries = GradientCanaries(included, seed)
    # the canaries sit in the fine-tuning phase only, so the audit run starts that phase from the
    # released model's own pretrained encoder (and its private steps in the accountant) rather than
    # pretraining again: the audited phase is the same, at the cost of fine-tuning alone
    reuse = getattr(ctx.train, "pretrained", None)
    with tempfile.TemporaryDirectory() as folder:
        run = fit(audit_plan, ctx.dataset, Path(folder), ctx.progress or NullProgress(),
                  public_X=load_public(plan, ctx.dataset), canaries=canaries, reuse_pretrained=reuse,
                  calibration_errors=False)
    return run, canaries, reuse is not None


def gradient_scores(canaries) -> np.ndarray:
    """Score of each gradient canary (higher = guessed in): the sum over steps of the privatised
    gradient's canary coordinate, times the averaging batch size, less the real rows' clipped sum
    there. The auditor may subtract the real rows' part: DP protects a canary against an
    adversary who knows every other example's contribution, and what is left is each step's
    canary gradient (``max_grad_norm`` when the canary was sampled) plus the noise."""
    if not len(canaries.privatised):
        raise ValueError("the audit run took no step")
    if len(canaries.privatised) != len(canaries.real):
        raise ValueError(f"{len(canaries.privatised)} privatised steps but {len(canaries.real)} clipped sums recorded")
    total = np.zeros(canaries.privatised.width)
    for privatised, real in zip(canaries.privatised.blocks(), canaries.real.blocks()):  # a block at a time
        total += (privatised.double().numpy() * canaries.expected_batch_size - real.double().numpy()).sum(axis=0)
    return total
