"""DP-SGD through Opacus (Abadi et al. 2016, "Deep Learning with Differential Privacy").

Opacus samples batches by Poisson sampling, clips per example and accounts the spent privacy.
When pretraining reads the private rows too, both phases feed one accountant: the pretraining
history is composed with the fine-tuning steps, and the noise of each phase is calibrated so
that the COMPOSED epsilon meets the target (:func:`calibrate_phases`). The only home of opacus.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from govssl.errors import ConfigError

__all__ = ["Private", "make_private", "dp_record_of", "quiet_opacus", "calibrate_phases", "composed_epsilon",
           "poisson_schedule", "fit_scale_private", "GradientCanaries", "level_selection", "SELECTION_DELTA_SHARE"]


def poisson_schedule(n: int, batch_size: int, epochs: int) -> tuple[float, int]:
    """(sample rate, steps) of Opacus's Poisson loader: rate 1 / batches per epoch, one step per batch."""
    batches = max(1, -(-n // batch_size))
    return 1.0 / batches, epochs * batches


# Opacus's RDP orders end at 63, where converting to (epsilon, delta) costs at least about
# log(1 / delta) / 62 - log(63) / 62: about 0.1 at delta 1e-5, whatever the noise. A phase that must
# reach a smaller share of the budget on its own (the temperature's 10% of epsilon 1) is
# calibrated with higher orders too; every order gives a valid conversion (Mironov 2017, Prop. 3),
# and the composed epsilon of the whole training is still Opacus's own figure.
_WIDE_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 96, 128, 192, 256, 384, 512, 1024]


def composed_epsilon(history: list, delta: float, accountant: str, wide_orders: bool = False) -> float:
    """Epsilon of the composition of ``history`` [(noise, sample rate, steps), ...] by Opacus
    (RDP with orders up to 1024 when ``wide_orders``)."""
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [tuple(h) for h in history]
    if wide_orders and accountant == "rdp":
        return float(acc.get_epsilon(delta=delta, alphas=_WIDE_ORDERS))
    return float(acc.get_epsilon(delta=delta))


def _smallest_noise(target: float, delta: float, accountant: str, prefix: list, rate: float, steps: int,
                    tolerance: float = 0.01, wide_orders: bool = False) -> float:
    """The smallest noise (to ``tolerance`` in epsilon) whose phase, composed after ``prefix``,
    stays within ``target``; the bisection keeps the side at or under the target."""
    def epsilon(noise: float) -> float:
        return composed_epsilon(prefix + [(noise, rate, steps)], delta, accountant, wide_orders)

    low, high = 0.0, 1.0
    eps_high = epsilon(high)
    while eps_high > target:
        low, high = high, 2 * high
        if high > 1e6:
            # the plan asks for the impossible: an input error naming the key, not a bug
            raise ConfigError(f"training.dp.target_epsilon: an epsilon of {target:.3g} at delta {delta:g} cannot be "
                              f"reached with any noise for {steps} steps at sample rate {rate:.3g} (a phase's share "
                              "of the target, or the target itself); raise target_epsilon or delta, or train fewer "
                              "steps")
        eps_high = epsilon(high)
    while target - eps_high > tolerance and high - low > 1e-6:
        mid = (low + high) / 2
        eps = epsilon(mid)
        if eps <= target:
            high, eps_high = mid, eps
        else:
            low = mid
    return high


def calibrate_phases(dp, phases: list[tuple[float, int]], shares: list[float | None] | None = None,
                     prefix: list | None = None) -> list[float]:
    """Noise multipliers for the phases [(sample rate, steps), ...] in training order.

    ``shares`` gives, for each phase, the share of ``dp.target_epsilon`` it reaches on its own,
    or None for the one phase that takes the rest: its noise is the smallest that keeps the
    composition of every phase within the target. By default one phase takes the whole target,
    and of two (pretraining, then fine-tuning) pretraining reaches ``dp.pretrain_share * target``
    alone. A fixed ``dp.noise_multiplier`` is used for every phase instead.

    ``prefix``: mechanisms already spent [(noise, sample rate, steps), ...] (the private selection
    of category levels), composed with the phases when the last one's noise is calibrated.
    """
    if dp.noise_multiplier is not None:
        return [float(dp.noise_multiplier)] * len(phases)
    if shares is None:
        shares = [None] if len(phases) == 1 else [dp.pretrain_share, None]
    if len(shares) != len(phases) or sum(share is None for share in shares) != 1:
        raise ValueError("give one share per phase, exactly one of them None (the phase that takes the rest)")
    noises: list[float] = [0.0] * len(phases)
    prefix = [tuple(h) for h in prefix or []]  # the composition is a sum over phases (RDP, PRV): order does not matter
    for i, ((rate, steps), share) in enumerate(zip(phases, shares)):
        if share is not None:
            noises[i] = _smallest_noise(dp.target_epsilon * share, dp.delta, dp.accountant, [], rate, steps,
                                        wide_orders=True)
            prefix.append((noises[i], rate, steps))
    rest = shares.index(None)
    rate, steps = phases[rest]
    noises[rest] = _smallest_noise(dp.target_epsilon, dp.delta, dp.accountant, prefix, rate, steps)
    return noises


# The share of the plan's delta that the private selection of category levels spends on its one
# failure: a value held by a single row crossing the threshold. The accountant converts the
# composition of every Gaussian phase at the rest of delta.
SELECTION_DELTA_SHARE = 0.1


def level_selection(dp, n_columns: int, seed: int) -> dict:
    """The private choice of category levels for ``n_columns`` columns that the plan does not
    declare: the Gaussian thresholding of a histogram (Korolova et al. 2009, "Releasing search
    queries and clicks privately"; Gopi et al. 2020, "Differentially private set union").

    One row adds 1 to one value's count in each column, so the vector of all counts has L2
    sensitivity sqrt(C) for C columns. Noise of standard deviation ``sigma = z * sqrt(C)`` makes
    the noisy counts of the values present in both neighbouring tables a Gaussian mechanism of
    noise multiplier ``z``: one step at sample rate 1 in the accountant's history, composed with
    the training phases. What that accounting misses is a value held by the one differing row
    appearing at all; its noisy count (1 plus noise) reaches the threshold ``1 + sigma * Q(d / C)``
    with probability at most d / C in each of the C columns, so with probability at most
    ``d = SELECTION_DELTA_SHARE * delta`` in all, which is added to delta (approximate RDP composes
    by adding the deltas: Bun and Steinke 2016, "Concentrated differential privacy"). The
    accountant then converts at the remaining delta.

    ``z`` reaches ``dp.levels_share * target_epsilon`` on its own (at the remaining delta), or is
    the plan's fixed ``noise_multiplier``.
    """
    from scipy.stats import norm

    if dp.accountant == "gdp":
        raise ConfigError("training.dp.accountant: 'gdp' cannot compose the private selection of category levels "
                          "(one full-table step) with the training phases; use rdp or prv, or declare every "
                          "categorical input's levels under dataset.levels")
    delta = dp.delta * SELECTION_DELTA_SHARE
    if dp.noise_multiplier is not None:
        z = float(dp.noise_multiplier)
    else:
        z = _smallest_noise(dp.target_epsilon * dp.levels_share, dp.delta - delta, dp.accountant, [], 1.0, 1,
                            wide_orders=True)
    sigma = z * float(np.sqrt(n_columns))
    threshold = 1.0 + sigma * float(norm.isf(delta / n_columns))
    return {"mechanism": "Gaussian thresholding of the value counts", "columns": int(n_columns),
            "noise_multiplier": z, "sigma": sigma, "threshold": threshold, "delta": delta, "seed": int(seed),
            "epsilon_share": None if dp.noise_multiplier is not None else float(dp.levels_share)}


def quiet_opacus() -> None:
    """Silence Opacus's advice that is not evidence: the insecure-RNG notice (noise comes from
    torch's seeded generator on purpose, for reproducible runs), the alpha-range hint (the bound is
    valid, only possibly loose) and the backward-hook notice for frozen inputs."""
    import warnings

    for message in ("Secure RNG turned off", "Optimal order is the largest alpha", "Full backward hook is firing"):
        warnings.filterwarnings("ignore", message=message)


class StepRecord:
    """One vector of ``width`` values per training step, stored in blocks of :data:`BLOCK` steps.

    A list of one small tensor per step would leave tens of thousands of them between the large
    per-step buffers of training (22,000 steps at 750,000 labelled rows), and glibc's heap could
    not give that memory back. ``blocks()`` gives the steps in order; ``len`` counts them."""

    BLOCK = 4096

    def __init__(self, width: int, dtype):
        self.width, self.dtype = int(width), dtype
        self._blocks: list[torch.Tensor] = []
        self._n = 0

    def append(self, values: torch.Tensor) -> None:
        if self._n % self.BLOCK == 0:
            self._blocks.append(torch.empty((self.BLOCK, self.width), dtype=self.dtype))
        self._blocks[-1][self._n % self.BLOCK] = values
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def blocks(self):
        """The recorded steps, as (steps, width) tensors of at most BLOCK steps, in order."""
        for i, block in enumerate(self._blocks):
            yield block[: min(self.BLOCK, self._n - i * self.BLOCK)]


class GradientCanaries:
    """White-box gradient canaries for a DP audit ("Dirac canaries", Steinke, Nasr and Jagielski
    2023, Section 5): canary j is an example whose clipped gradient is ``max_grad_norm * e_j``,
    e_j the j-th of ``m`` distinct coordinates of the largest trainable weight matrix (chosen from
    ``seed``). The ``included`` canaries are extra rows of the private phase: Poisson-sampled into
    each batch at the real rows' rate, counted in the data-set size that sets Opacus's sampling
    rate and averaging batch size, and their gradients added to the sum of the real rows' clipped
    gradients before Opacus adds the noise. Per step, it records at the canary coordinates the
    real rows' clipped sum (``real``), the privatised gradient Opacus hands the optimizer, noised
    and averaged (``privatised``), and which canaries were sampled (``sampled``).

    Audit evidence only (see govssl/checks/_canary.py); the noise and accounting stay Opacus's.
    """

    def __init__(self, included, seed: int):
        import numpy as np

        self.included = np.asarray(included, dtype=bool)
        self.m, self.seed = len(self.included), int(seed)
        self.members = np.flatnonzero(self.included)  # canary of each extra row
        self.parameter = self.coordinates = self.expected_batch_size = None
        # per step (see StepRecord): the real rows' clipped sum and the privatised gradient at the
        # canary coordinates, and which canaries were sampled
        self.real, self.privatised = StepRecord(self.m, torch.float32), StepRecord(self.m, torch.float32)
        self.sampled = StepRecord(self.m, torch.bool)
        self._pending = torch.zeros(0, dtype=torch.long)

    @property
    def n_included(self) -> int:
        return len(self.members)

    def attach(self, model, optimizer, n_real: int, max_grad_norm: float) -> None:
        """Pick the coordinates in ``model``'s largest trainable weight matrix; record each step."""
        import numpy as np

        weights = [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
        if not weights:
            raise ValueError("gradient canaries need a trainable weight matrix")
        name, weight = max(weights, key=lambda item: item[1].numel())
        if weight.numel() < self.m:
            raise ValueError(f"gradient canaries need {self.m} distinct coordinates; the largest trainable "
                             f"weight matrix ({name}) has {weight.numel()}")
        rng = np.random.default_rng(self.seed)
        self.parameter = name
        self._weight, self._n_real, self._value = weight, n_real, float(max_grad_norm)
        self.shape = tuple(weight.shape)
        self.coordinates = torch.as_tensor(rng.choice(weight.numel(), size=self.m, replace=False))
        self.expected_batch_size = int(optimizer.expected_batch_size)
        # the optimizer Opacus wraps sees the privatised gradient just before it steps
        optimizer.original_optimizer.register_step_pre_hook(self._record)

    def split(self, batches):
        """The real rows of each batch; the canaries drawn with them wait for :meth:`add`."""
        for batch in batches:
            real = batch < self._n_real
            self._pending = torch.as_tensor(self.members)[batch[~real] - self._n_real]
            yield batch[real]

    def add(self) -> None:
        """Add the pending canaries' clipped gradients to the weight's summed clipped gradient."""
        flat = self._weight.grad.view(-1)
        sampled = torch.zeros(self.m, dtype=torch.bool)
        sampled[self._pending] = True
        self.real.append(flat[self.coordinates].detach())
        self.sampled.append(sampled)
        flat[self.coordinates[self._pending]] += self._value
        self._pending = torch.zeros(0, dtype=torch.long)

    def _record(self, optimizer, args, kwargs) -> None:
        self.privatised.append(self._weight.grad.view(-1)[self.coordinates].detach())


class Private:
    """One private training phase: the DP optimizer (Opacus's: it adds the noise and reports each
    step to the accountant), Poisson batches of row indices, and the clipping backward pass.

    ``backward(loss)`` takes what ``criterion`` returned for a batch and leaves the sum of the
    clipped per-example gradients in ``.grad``; ``empty_step()`` takes the step of a batch that
    Poisson sampling left empty, which is noise alone (skipping it would release whether the
    batch was empty).
    """

    def __init__(self, model, optimizer, criterion, engine, batches, clipping: str, clipper=None, canaries=None):
        self.model, self.optimizer, self.criterion, self.engine = model, optimizer, criterion, engine
        self._batches, self.clipping, self._clipper, self.canaries = batches, clipping, clipper, canaries

    @property
    def batches(self):
        """Batches of real row indices (with gradient canaries: the real rows of each draw)."""
        if self.canaries is None:
            return self._batches
        return _Sized(self.canaries.split(self._batches), len(self._batches))

    def backward(self, loss) -> float:
        if self._clipper is not None:  # per-example losses, clipped in one pass
            self._clipper.backward(loss)
            value = float(loss.detach().mean())
        else:
            loss.backward()  # Opacus's ghost clipping: two passes inside
            value = float(loss.item())
        if self.canaries is not None:
            self.canaries.add()
        return value

    def empty_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.optimizer.params:
            p.grad = torch.zeros_like(p)
        if self.canaries is not None:
            self.canaries.add()
        self.optimizer.step()

    def trained_module(self):
        """The trained module, without hooks."""
        if self._clipper is not None:
            self._clipper.remove()
        from govssl.train._distributed import unwrap

        return unwrap(getattr(self.model, "_module", self.model))


class _Sized:
    def __init__(self, iterator, length: int):
        self._iterator, self._length = iterator, length

    def __iter__(self):
        return self._iterator

    def __len__(self) -> int:
        return self._length


def make_private(model, optimizer, criterion, n: int, batch_size: int, epochs: int, dp, generator,
                 noise_multiplier: float | None = None, prior_history: list | None = None,
                 canaries: GradientCanaries | None = None) -> Private:
    """Prepare a phase of DP-SGD on ``n`` private rows: noise ``noise_multiplier`` (from
    :func:`calibrate_phases`), else the plan's fixed noise, else the noise that reaches the plan's
    target epsilon in this phase alone. ``prior_history`` (an earlier phase's steps) goes first
    into the same accountant, so that the epsilon it reports is the composition of all phases.

    Batches are Poisson samples at rate 1 / (batches per epoch), one step per batch, as Opacus's
    DPDataLoader draws them. Clipping is flat and per example. For models whose trainable
    parameters all sit in linear layers and 2-D convolutions (every model govssl builds),
    :class:`govssl.train._clip.OnePassClipper` clips in one backward pass; other models use
    Opacus's ghost clipping (Li et al. 2022, "Large Language Models Can Be Strong Differentially
    Private Learners"), which needs two. Both give the same clipped sums, and
    ``python benchmarks/bench_dp_overhead.py`` times them against plain training.

    ``canaries`` (audit runs only; one-pass clipping only): the included gradient canaries become
    rows ``n, n + 1, ...`` of the phase, sampled, counted and noised like the real rows.
    """
    from opacus import PrivacyEngine
    from opacus.optimizers import DPOptimizerFastGradientClipping

    from govssl.train import _distributed as dist
    from govssl.train._clip import OnePassClipper, PoissonBatches

    ctx = dist.context()
    n_real = n
    if canaries is not None:
        n += canaries.n_included
    sample_rate, steps = poisson_schedule(n, batch_size, epochs)
    if noise_multiplier is None:
        (noise_multiplier,) = calibrate_phases(dp, [(sample_rate, steps)])
    engine = PrivacyEngine(accountant=dp.accountant)
    expected_batch_size = int(n * sample_rate)
    optimizer_class = DPOptimizerFastGradientClipping
    if ctx is None:
        batches = PoissonBatches(n, sample_rate, steps // epochs, generator)
    else:
        # Each process samples its shard at the one-process rate; Opacus's distributed optimizer
        # sums the clipped gradients of all processes, adds the noise on rank 0 only, and divides
        # by this expected batch size times the world size: the one-process expected batch size.
        if canaries is not None or OnePassClipper.unsupported(model) is not None:
            raise ValueError("distributed DP training needs one-pass clipping and no gradient canaries")
        batches = dist.ShardedPoisson(n, sample_rate, steps // epochs, generator)
        expected_batch_size = expected_batch_size / ctx.world_size
        optimizer_class = dist.bucketed_dp_optimizer()
    if OnePassClipper.unsupported(model) is None:
        clipper = OnePassClipper(model, dp.max_grad_norm)
        optimizer = optimizer_class(
            optimizer, noise_multiplier=noise_multiplier, max_grad_norm=dp.max_grad_norm,
            expected_batch_size=expected_batch_size, loss_reduction="mean", generator=generator,
        )
        optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=sample_rate))
        criterion = copy.deepcopy(criterion)
        criterion.reduction = "none"  # per-example losses for the clipper
        private = Private(model, optimizer, criterion, engine, batches,
                          "flat, per example (one backward pass, from activations and output gradients)", clipper,
                          canaries)
        if canaries is not None:
            canaries.attach(model, optimizer, n_real, dp.max_grad_norm)
        if ctx is not None:
            from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

            private.model = DPDDP(model)  # the same start on every process (rank 0's weights)
    else:
        if canaries is not None:
            raise ValueError(f"gradient canaries need one-pass clipping: {OnePassClipper.unsupported(model)}")
        # Opacus's own Poisson loader is replaced by ``batches`` (the same draws): the loader
        # given here only tells Opacus the batch size, for the sampling rate and noise scale.
        loader = DataLoader(TensorDataset(torch.arange(n)), batch_size=batch_size)
        model, optimizer, criterion, _ = engine.make_private(
            module=model, optimizer=optimizer, criterion=criterion, data_loader=loader, noise_multiplier=noise_multiplier,
            max_grad_norm=dp.max_grad_norm, poisson_sampling=False, grad_sample_mode="ghost", noise_generator=generator,
        )
        private = Private(model, optimizer, criterion, engine, batches, "flat, per example (Opacus ghost clipping)")
    if prior_history:
        engine.accountant.history = [tuple(h) for h in prior_history]
    return private


def dp_record_of(private: Private, dp) -> dict:
    """What an auditor needs to recompute epsilon: the accountant's history and the parameters."""
    engine, optimizer = private.engine, private.optimizer
    history = [[float(noise), float(rate), int(steps)] for noise, rate, steps in engine.accountant.history]
    return {
        # the composition of every phase in the history (pretraining first, if it was private)
        "epsilon": float(engine.get_epsilon(dp.delta)),
        "target_epsilon": float(dp.target_epsilon) if dp.noise_multiplier is None else None,
        "delta": float(dp.delta),
        "accountant": dp.accountant,
        "noise_multiplier": float(optimizer.noise_multiplier),
        "sample_rate": float(history[-1][1]) if history else float(private._batches.sample_rate),
        "steps": int(sum(h[2] for h in history)),
        "max_grad_norm": float(dp.max_grad_norm),
        "poisson_sampling": True,
        "clipping": private.clipping,
        "secure_rng": False,  # noise from torch's seeded generator, so a run can be reproduced
        "history": history,
    }


class _LogitScale(nn.Module):
    """``s * logits`` with one parameter ``s`` (the inverse temperature), as a bias-free 1x1 linear
    layer over each logit, so that Opacus computes its per-example gradients itself."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.scale.weight.fill_(1.0)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.scale(logits.unsqueeze(-1)).squeeze(-1)


def fit_scale_private(logits: torch.Tensor, y: torch.Tensor, dp, noise_multiplier: float, max_grad_norm: float,
                      batch_size: int, steps: int, lr: float, bounds: tuple[float, float], generator: torch.Generator,
                      prior_history: list | None = None) -> tuple[float, dict]:
    """DP-SGD (Opacus) on one parameter: the inverse temperature ``s`` minimising the cross-entropy
    of ``softmax(s * logits)`` on private rows. Per-example gradients are clipped to
    ``max_grad_norm`` and noised (standard deviation ``noise_multiplier * max_grad_norm``); batches are Poisson samples at rate
    1 / ceil(n / batch_size), ``steps`` of them, an empty one taking a noise-only step.

    ``s`` is kept within ``bounds`` after each step (a projection, which costs no privacy) and the
    estimate is the mean of the iterates of the second half of the steps (Polyak averaging: the
    noise of single steps averages out). ``prior_history`` (the earlier phases) goes first into the
    same accountant. Returns (s, {"epsilon": composed epsilon, "history": accountant history}).
    """
    from opacus import PrivacyEngine

    from govssl.train._clip import PoissonBatches

    quiet_opacus()
    n = len(logits)
    sample_rate, _ = poisson_schedule(n, batch_size, 1)
    module = _LogitScale()
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    # The loader only tells Opacus the sampling rate (1 / its length); the batches are drawn below.
    loader = DataLoader(TensorDataset(torch.arange(n)), batch_size=batch_size)
    engine = PrivacyEngine(accountant=dp.accountant)
    model, optimizer, _ = engine.make_private(
        module=module, optimizer=optimizer, data_loader=loader, noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm, poisson_sampling=False, grad_sample_mode="hooks", noise_generator=generator,
    )
    if prior_history:
        engine.accountant.history = [tuple(h) for h in prior_history]
    weight = module.scale.weight
    loss_fn = nn.CrossEntropyLoss()
    iterates = []
    for idx in PoissonBatches(n, sample_rate, steps, generator):
        optimizer.zero_grad(set_to_none=True)
        if len(idx) == 0:  # an empty Poisson batch: the step is noise alone
            for p in optimizer.params:
                p.grad_sample = torch.zeros((0, *p.shape))
        else:
            loss_fn(model(logits[idx]), y[idx]).backward()
        optimizer.step()
        with torch.no_grad():
            weight.clamp_(*bounds)
        iterates.append(float(weight.detach()))
    scale = float(np.mean(iterates[len(iterates) // 2:]))
    history = [[float(noise), float(rate), int(k)] for noise, rate, k in engine.accountant.history]
    return scale, {"epsilon": float(engine.get_epsilon(dp.delta)), "history": history}
