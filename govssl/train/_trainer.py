"""The trainer: SSL pretraining of the encoder, then the classifier on a fraction of the labels.

Differential privacy (DP-SGD with Opacus) covers every phase that reads the private rows when
the plan enables it: per-example pretraining (VIME, rotation) and the supervised phase compose
in one accountant. Contrastive pretraining is refused under DP unless it reads a declared public
dataset. The record says which phases were private (``dp_scope``); a guarantee for the training
data holds end to end only if no phase read the private rows without DP.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from govssl.errors import ConfigError
from govssl.records import TrainRecord, sha256_file
from govssl.train.models import Architecture, build_classifier, predict_proba, split_classifier
from govssl.train._calibrate import PRIVATE_LR, PRIVATE_MAX_GRAD_NORM, PRIVATE_STEPS, SCALE_BOUNDS, fit_scale, fold_scale, holdout_split, logits_of
from govssl.train import _distributed as dist
from govssl.train._loop import batches, train_epochs
from govssl.train._pretrain import pretrain

__all__ = ["TRAIN_THREADS", "PretrainedEncoder", "TrainResult", "fit", "label_subset"]

# torch's intra-op thread count while training. A float sum split across threads rounds
# differently from the same sum on fewer threads, so the weights (and the model's sha256) would
# depend on the machine's core count, which sets torch's default. One thread is also the fastest
# on a busy machine (``python benchmarks/bench_train_threads.py`` times it against the default).
TRAIN_THREADS = 1


@dataclass
class TrainResult:
    """The trained classifier (a plain module, no DP hooks) and what the trainer did."""

    model: nn.Sequential
    architecture: Architecture
    record: TrainRecord
    labelled_rows: np.ndarray  # indices into the training rows the classifier was fitted on
    baseline: nn.Sequential | None = None  # supervised-only model (label_efficiency evidence)
    # labelled rows held out from the classifier to fit the temperature (empty without calibration)
    calibration_rows: np.ndarray | None = None
    # the encoder as pretraining left it, before fine-tuning (None when the plan does not pretrain
    # or the training ran on several processes): lets a DP audit of the fine-tuning phase start
    # from the released model's own pretraining instead of running that phase again
    pretrained: PretrainedEncoder | None = None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return predict_proba(self.model, X)


@dataclass(frozen=True)
class PretrainedEncoder:
    """The state of the encoder after the pretraining phase of a training, with that phase's
    losses and its steps in the DP accountant's history (empty without DP). Kept in memory only:
    it is not part of the model file or the record."""

    state: dict
    losses: list
    history: list  # (noise multiplier, sample rate, steps) of the private pretraining phase


def _mapped(X) -> bool:
    """``X`` is an out-of-core table's rows (read from their mapped file a batch at a time)."""
    from govssl.data import EncodedRows

    return isinstance(X, EncodedRows)


def label_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Stratified ``fraction`` of the rows (at least one per class), sorted, the same for a seed."""
    rng = np.random.default_rng(seed + 1)
    chosen = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        take = max(1, int(round(len(rows) * fraction)))
        chosen.append(rng.choice(rows, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


def _supervised(model: nn.Module, params, X: torch.Tensor, y: torch.Tensor, spec, dp, seed: int, progress, label: str,
                noise_multiplier: float | None = None, prior_history: list | None = None, canaries=None):
    """Plain or DP-SGD (Opacus, Poisson sampling) training; returns (trained module, losses, dp record).

    Under DP, ``prior_history`` (a private pretraining phase) enters the same accountant first,
    so the recorded epsilon is the composition of both phases."""
    optimizer = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    generator = dist.generator(seed)
    loss_fn = nn.CrossEntropyLoss()
    batch_size = min(spec.batch_size, len(X))
    private = None
    if dp is not None and dp.enabled:
        from govssl.train._dp import make_private, quiet_opacus

        quiet_opacus()
        private = make_private(model, optimizer, loss_fn, len(X), batch_size, spec.epochs, dp, generator,
                               noise_multiplier=noise_multiplier, prior_history=prior_history, canaries=canaries)
        model, optimizer, loss_fn = private.model, private.optimizer, private.criterion
        batches_per_epoch = len(private.batches)
        epoch_batches = lambda: private.batches
    elif dist.context() is not None:  # a shard per process, gradients averaged by DDP
        model = dist.wrap_ddp(model)
        epoch_batches = dist.ShardedBatches(len(X), batch_size, seed)
        batches_per_epoch = len(epoch_batches)
    else:
        batches_per_epoch = (len(X) + batch_size - 1) // batch_size
        epoch_batches = lambda: batches(len(X), batch_size, generator)

    def batch_loss(idx):
        return loss_fn(model(X[idx]), y[idx])

    model.train()
    losses = train_epochs(optimizer, spec.epochs, epoch_batches, batch_loss, progress, label, batches_per_epoch,
                          private=private)
    if private is None:
        return dist.unwrap(model), losses, None
    from govssl.train._dp import dp_record_of

    return private.trained_module(), losses, dp_record_of(private, dp)


def _architecture(spec, data) -> Architecture:
    n_classes = max(2, len(data.classes))
    if data.is_images:
        return Architecture(
            kind="cnn", in_shape=[int(d) for d in data.X_train.shape[1:]], channels=list(spec.encoder.channels),
            hidden_dims=list(spec.encoder.hidden_dims), dropout=float(spec.encoder.dropout),
            n_classes=n_classes, class_names=list(data.classes),
        )
    return Architecture(
        in_dim=int(data.X_train.shape[1]), hidden_dims=list(spec.encoder.hidden_dims),
        dropout=float(spec.encoder.dropout), n_classes=n_classes,
        feature_names=list(data.encoder.feature_names),
    )


def _check_recipe(plan, data, public: bool) -> None:
    """What the schema cannot see: methods that need the data's kind, DP that cannot compose."""
    spec = plan.training
    method = spec.pretrain.method
    if method == "none" or spec.pretrain.epochs == 0:
        return
    images = data.is_images
    if method in ("scarf", "vime") and images or method in ("simclr", "rotation") and not images:
        raise ConfigError(f"training.pretrain.method: '{method}' does not apply to "
                          f"{'image' if images else 'tabular'} data")
    if method == "rotation" and data.X_train.shape[2] != data.X_train.shape[3]:
        raise ConfigError("training.pretrain.method: rotation prediction needs square images; "
                          f"got {data.X_train.shape[2]}x{data.X_train.shape[3]}")
    if spec.dp.enabled and not public:
        if method in ("scarf", "simclr"):
            from govssl.plan import CONTRASTIVE_UNDER_DP

            alternatives = "vime, masked feature reconstruction" if method == "scarf" else "rotation prediction"
            raise ConfigError(CONTRASTIVE_UNDER_DP.format(method=method, alternatives=alternatives))
        if spec.dp.accountant == "gdp":
            raise ConfigError("training.dp.accountant: 'gdp' cannot compose two phases with different "
                              "sampling rates (pretraining and fine-tuning); use rdp or prv")


def _refuse_an_empty_claim(dp, history: list[tuple[float, float, int]]) -> None:
    """A fixed ``noise_multiplier`` whose composed epsilon is infinite (noise 0) or past
    ``MAX_EPSILON`` would tag the model "differential privacy" with no guarantee behind it: refused
    before training, as a target epsilon past the bound is refused when the plan is read."""
    if dp.noise_multiplier is None:
        return
    import math

    from govssl.plan import MAX_EPSILON
    from govssl.train._dp import composed_epsilon

    epsilon = math.inf if dp.noise_multiplier <= 0 else composed_epsilon(history, dp.delta, dp.accountant)
    if not math.isfinite(epsilon) or epsilon > MAX_EPSILON:
        raise ConfigError(
            f"training.dp.noise_multiplier: {dp.noise_multiplier:g} gives epsilon {epsilon:.4g} at delta "
            f"{dp.delta:g} for this training, past the {MAX_EPSILON:g} a differential-privacy claim may make; "
            "raise the noise, or give training.dp.target_epsilon instead")


def _check_calibration(spec) -> None:
    """Under DP a calibration phase composes with fine-tuning (and private pretraining)."""
    if spec.calibration.method == "none" or not spec.dp.enabled:
        return
    if spec.dp.accountant == "gdp":
        raise ConfigError("training.dp.accountant: 'gdp' cannot compose two phases with different "
                          "sampling rates (fine-tuning and the calibration of the temperature); use rdp or "
                          "prv, or set training.calibration.method: none")
    if spec.dp.noise_multiplier is not None:
        # the temperature's full-batch steps at the training noise would cost far more than its
        # share (noise 1: epsilon 65 at delta 1e-5), and a fixed noise sets no target to share
        raise ConfigError("training.calibration.method: a private temperature needs a target epsilon to take "
                          "its share of, and training.dp.noise_multiplier fixes the noise instead; use "
                          "training.dp.target_epsilon, or set training.calibration.method: none")
    private_pretrain = (spec.pretrain.method != "none" and spec.pretrain.epochs > 0
                        and spec.pretrain.public_data is None)
    if private_pretrain and spec.dp.pretrain_share + spec.calibration.epsilon_share >= 1:
        raise ConfigError(
            f"training.calibration.epsilon_share: {spec.calibration.epsilon_share:g} with "
            f"training.dp.pretrain_share {spec.dp.pretrain_share:g} leaves no budget for fine-tuning; "
            "the two shares must add up to less than 1")


def _save(model: nn.Module, arch: Architecture, path: Path, temperature: float | None = None) -> None:
    """The weights and, in the metadata, the architecture; with ``temperature``, the architecture
    also states the temperature already folded into the last layer's weight and bias."""
    path.parent.mkdir(parents=True, exist_ok=True)
    described = arch
    if temperature is not None:
        described = Architecture(arch, calibration={
            "method": "temperature", "temperature": temperature,
            "applied": "folded in: the last layer's weight and bias are the trained ones divided by the temperature",
        })
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(path),
        # One key only: safetensors writes metadata keys in hash-map order, which varies between
        # calls, and the file's sha256 must not.
        metadata={"govssl_architecture": described.to_json()},
    )


def _downstream(model, arch, X_lab, y_lab, spec, dp, seed, progress, mode, noise=None, prior_history=None,
                canaries=None):
    """Linear probe (frozen encoder) or full fine-tuning; returns (plain model, losses, dp record)."""
    encoder, head = split_classifier(model)
    rows = len(X_lab)
    if mode == "linear_probe":
        # The encoder is frozen: train the head on fixed embeddings (the same optimisation, cheaper).
        encoder.eval()
        with torch.no_grad():
            Z = encoder(X_lab)
        head, losses, dp_record = _supervised(
            head, list(head.parameters()), Z, y_lab, spec.finetune, dp, seed,
            progress, f"training linear probe on {rows:,} labelled rows" + (" (DP-SGD)" if dp else ""),
            noise_multiplier=noise, prior_history=prior_history, canaries=canaries,
        )
        model = nn.Sequential(*encoder, head)
    else:
        model, losses, dp_record = _supervised(
            model, list(model.parameters()), X_lab, y_lab, spec.finetune, dp, seed,
            progress, f"fine-tuning on {rows:,} labelled rows" + (" (DP-SGD)" if dp else ""),
            noise_multiplier=noise, prior_history=prior_history, canaries=canaries,
        )
    return _plain_copy(model, arch), losses, dp_record


@contextmanager
def fixed_threads(n: int = TRAIN_THREADS):
    """torch's intra-op thread count set to ``n`` for the block, the previous count restored after.

    Inter-op threads need no fixing: training runs no inter-op parallel work (no ``torch.jit.fork``),
    and their count can only be set once per process anyway.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)


def fit(plan, data, out_dir: Path, progress, public_X: np.ndarray | None = None, canaries=None,
        nproc: int = 1, reuse_pretrained: PretrainedEncoder | None = None,
        calibration_errors: bool = True) -> TrainResult:
    """Train the plan's model on ``data`` (a Dataset); save it as safetensors in ``out_dir``.

    ``public_X``: the rows of a declared public dataset (``training.pretrain.public_data``), already
    encoded like ``data``; pretraining then reads them instead of the private training rows.

    Training runs on :data:`TRAIN_THREADS` intra-op threads whatever the machine, so that the same
    plan and seed give the same weights file on any CPU with the same instruction set.

    ``canaries`` (a :class:`govssl.train._dp.GradientCanaries`; DP audits only, off by default):
    the fine-tuning phase carries these white-box gradient canaries as extra private rows, and
    runs as clipped SGD without noise when the plan has no DP.

    ``nproc`` > 1: train on that many processes under ``torch.distributed`` (see
    :mod:`govssl.train._distributed`); each process loads the plan's data itself, so ``data`` must
    be the plan's own (not a modified copy) and ``canaries`` cannot be given. In rank 0 of a
    ``torchrun`` launch, ``nproc`` is its world size and the other ranks are already running.

    ``reuse_pretrained`` (the ``pretrained`` of an earlier :class:`TrainResult` of the same plan and
    data): the pretraining phase is not run again; the encoder starts fine-tuning from that state,
    and under DP that phase's steps open the accountant's history as they did in the earlier run.
    Only an audit of the later phases may use it (``govssl.checks._canary``), since the two runs
    then share their pretraining.

    ``calibration_errors=False``: the calibration record leaves out the expected calibration
    errors before and after, which score the whole test split twice; for runs whose record is
    not kept (a check's retrains). The weights are the same either way.
    """
    if nproc > 1:
        if canaries is not None or reuse_pretrained is not None:
            raise ValueError("gradient canaries and a reused pretraining train in one process")
        rows = len(label_subset(data.y_train, plan.training.finetune.label_fraction, plan.seed))
        if nproc > rows:
            raise ConfigError(f"training.distributed.nproc: {nproc} processes for {rows:,} labelled rows; "
                              "every process needs a shard of them, so use at most as many processes as rows")
        if dist.torchrun_rank() is not None:  # started by torchrun: the other processes are running already
            return dist.fit_under_torchrun(plan, data, public_X, out_dir, progress)
        return dist.fit_distributed(plan, data, out_dir, progress, nproc)
    with fixed_threads() as threads:
        return _fit(plan, data, out_dir, progress, public_X, threads, canaries, reuse_pretrained, calibration_errors)


def _fit(plan, data, out_dir: Path, progress, public_X, threads: int, canaries=None,
         reuse_pretrained: PretrainedEncoder | None = None, calibration_errors: bool = True) -> TrainResult:
    spec = plan.training
    seed = plan.seed
    started = time.perf_counter()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    public = public_X is not None
    _check_recipe(plan, data, public)
    _check_calibration(spec)

    # an out-of-core table's rows stay in their mapped file: indexed with a tensor, they give one
    X_all = data.X_train if _mapped(data.X_train) else torch.as_tensor(data.X_train, dtype=torch.float32)
    arch = _architecture(spec, data)
    model = build_classifier(arch)
    encoder, _ = split_classifier(model)
    dp = spec.dp if spec.dp.enabled else None
    # Category levels chosen by a private selection (govssl.train._dp.level_selection): its one
    # Gaussian step opens the accountant's history, and the accountant converts at the delta the
    # selection leaves.
    selection = data.encoder.selection if dp is not None and data.encoder is not None else None
    spent = []
    if selection:
        dp = dp.model_copy(update={"delta": spec.dp.delta - selection["delta"]})
        spent = [(float(selection["noise_multiplier"]), 1.0, 1)]

    rows = label_subset(data.y_train, spec.finetune.label_fraction, seed)
    calibrating = spec.calibration.method == "temperature"
    held = None
    if calibrating:
        rows, held = holdout_split(rows, data.y_train, spec.calibration.holdout_fraction, seed)
        if len(held) == 0:
            raise ConfigError(
                f"training.calibration.holdout_fraction: {spec.calibration.holdout_fraction:g} of the "
                f"{len(rows):,} labelled rows holds out no row for the temperature; raise it (or "
                "training.finetune.label_fraction), or set training.calibration.method: none")
    X_lab = torch.as_tensor(X_all[rows])
    y_lab = torch.as_tensor(data.y_train[rows], dtype=torch.long)
    mode = spec.finetune.mode

    history: dict[str, list[float]] = {}
    method = spec.pretrain.method
    pretrained = method != "none" and spec.pretrain.epochs > 0
    X_pre = torch.as_tensor(public_X, dtype=torch.float32) if public else X_all
    private_pretrain = pretrained and not public and dp is not None
    finetune_rows = len(rows) + (canaries.n_included if canaries is not None else 0)
    noise_pre = noise_fine = noise_cal = None
    phases = []
    if dp is not None:
        from govssl.train._dp import calibrate_phases, poisson_schedule

        fine = poisson_schedule(finetune_rows, min(spec.finetune.batch_size, finetune_rows), spec.finetune.epochs)
        phases, shares = [("finetune", fine)], [None]
        if private_pretrain:
            pre = poisson_schedule(len(X_pre), min(spec.pretrain.batch_size, len(X_pre)), spec.pretrain.epochs)
            phases, shares = [("pretrain", pre)] + phases, [dp.pretrain_share] + shares
        if calibrating:
            phases.append(("calibration", poisson_schedule(len(held), len(held), PRIVATE_STEPS)))
            shares.append(spec.calibration.epsilon_share)
        noises = calibrate_phases(dp, [schedule for _, schedule in phases], shares, prefix=spent)
        _refuse_an_empty_claim(dp, spent + [(noise, *schedule) for (_, schedule), noise in zip(phases, noises)])
        noise_of = {name: noise for (name, _), noise in zip(phases, noises)}
        noise_pre, noise_fine, noise_cal = noise_of.get("pretrain"), noise_of["finetune"], noise_of.get("calibration")

    prior_history = None
    kept = None
    if pretrained and reuse_pretrained is not None:
        encoder.load_state_dict(reuse_pretrained.state)
        history["pretrain_loss"] = list(reuse_pretrained.losses)
        if private_pretrain:
            prior_history = [tuple(h) for h in reuse_pretrained.history]
        kept = reuse_pretrained
    elif pretrained:
        groups = categorical = None
        if data.encoder is not None:
            groups = [block for _, block in data.encoder.groups]
            categorical = [name in data.encoder.categorical_names for name, _ in data.encoder.groups]
        losses, engine = pretrain(
            method, encoder, X_pre, groups, spec.pretrain, seed, progress,
            dp=dp if private_pretrain else None, noise_multiplier=noise_pre,
            source="public" if public else "private", categorical=categorical,
        )
        history["pretrain_loss"] = losses
        if engine is not None:
            prior_history = [tuple(h) for h in engine.accountant.history]
        kept = PretrainedEncoder(state={k: v.detach().clone() for k, v in encoder.state_dict().items()},
                                 losses=list(losses), history=list(prior_history or []))
    if spent:
        prior_history = spent + (prior_history or [])

    fine_dp = dp
    if canaries is not None and dp is None:  # audit of a model without DP: clipped SGD, no noise
        fine_dp, noise_fine = spec.dp.model_copy(update={"enabled": True, "noise_multiplier": 0.0}), 0.0
    model, losses, dp_record = _downstream(model, arch, X_lab, y_lab, spec, fine_dp, seed, progress, mode,
                                           noise=noise_fine, prior_history=prior_history, canaries=canaries)
    history["finetune_loss"] = losses
    calibration, model = _calibrate(plan, data, model, X_all, held, dp, noise_cal, dp_record, seed,
                                    calibration_errors)
    if dp_record is not None:
        dp_record["phases"] = [
            {"phase": name, "noise_multiplier": float(noise_of[name]), "sample_rate": float(rate), "steps": int(steps)}
            for name, (rate, steps) in phases
        ]
        if selection:
            dp_record["phases"].insert(0, {"phase": "category levels", "noise_multiplier": spent[0][0],
                                           "sample_rate": 1.0, "steps": 1})
            # the guarantee is (epsilon, delta) at the plan's delta: the accountant's conversion
            # at accountant_delta plus the selection's threshold failure
            dp_record.update(delta=float(spec.dp.delta), accountant_delta=float(dp.delta),
                             level_selection={k: v for k, v in selection.items() if k != "seed"})
        if private_pretrain:
            dp_record["pretrain_share"] = float(dp.pretrain_share)
            if method == "vime":
                dp_record["pretrain_replacement_values"] = (
                    "drawn without reading any row (standard normal for numeric features, a uniform "
                    "level for categorical ones), so each example depends on its own row only")

    model_path = out_dir / "model.safetensors"
    _save(model, arch, model_path, calibration.get("temperature"))

    baseline, baseline_record = None, None
    if spec.baseline and pretrained:
        baseline, baseline_record = _train_baseline(plan, arch, X_lab, y_lab, dp, seed, progress)

    phase = "head" if mode == "linear_probe" else "finetune"
    dp_scope = "none" if dp is None else (f"pretrain+{phase}" if private_pretrain else phase)
    record = TrainRecord(
        method=method if pretrained else "none",
        finetune_mode=mode,
        label_fraction=spec.finetune.label_fraction,
        n_pretrain_rows=len(X_pre) if pretrained else 0,
        n_labelled_rows=int(len(rows)),
        pretrain_epochs=spec.pretrain.epochs if pretrained else 0,
        finetune_epochs=spec.finetune.epochs,
        dp_scope=dp_scope,
        # Only private if no phase read the private rows without DP.
        end_to_end_dp=bool(dp is not None and (not pretrained or public or private_pretrain)),
        dp=dp_record,
        model_path=str(model_path.resolve()),
        model_sha256=sha256_file(model_path),
        architecture=arch.text,
        n_parameters=sum(p.numel() for p in model.parameters()),
        seed=seed,
        torch_threads=threads,
        seconds=round(time.perf_counter() - started, 3),
        history=history,
        pretrain_data=("none" if not pretrained else
                       f"public: {plan.training.pretrain.public_data}" if public else "private training rows"),
        baseline=baseline_record,
        category_levels=data.encoder.levels_record(dp is not None) if data.encoder is not None else {},
        calibration=calibration,
        distributed=dist.record(),
    )
    return TrainResult(model=model, architecture=arch, record=record, labelled_rows=rows, baseline=baseline,
                       calibration_rows=held, pretrained=kept)


def _calibrate(plan, data, model, X_all, held, dp, noise, dp_record, seed, errors: bool = True):
    """Fit the temperature on the held-out rows and fold it into ``model``; (record, model).

    Under DP the fit is a DP-SGD phase whose steps join the accountant's history after the earlier
    phases, and ``dp_record``'s epsilon, steps and history become those of the composition. The
    expected calibration errors are measured on the test split (no private row), before and after,
    with the performance check's bins, unless ``errors`` is false."""
    spec = plan.training.calibration
    if spec.method == "none":
        return {"method": "none"}, model
    from govssl.checks.performance import expected_calibration_error

    X_test = data.X_test if _mapped(data.X_test) else torch.as_tensor(data.X_test, dtype=torch.float32)
    n_bins = int((plan.checks.get("performance") or {}).get("calibration_bins", 15))
    z_held = logits_of(model, torch.as_tensor(X_all[held]))
    y_held = torch.as_tensor(data.y_train[held], dtype=torch.long)
    record = {"method": "temperature", "rows": int(len(held)),
              "holdout_fraction": float(spec.holdout_fraction),
              "rows_note": "labelled rows held out from the classifier's training; they fit only the temperature"}
    if dp is None:
        scale = fit_scale(z_held, y_held)
        record.update(private=False, source="held-out labelled training rows, without DP")
    else:
        from govssl.train._dp import fit_scale_private

        history = [tuple(h) for h in dp_record["history"]]
        generator = torch.Generator().manual_seed(seed + 3)
        scale, spent = fit_scale_private(z_held, y_held, dp, noise, PRIVATE_MAX_GRAD_NORM, len(held), PRIVATE_STEPS, PRIVATE_LR,
                                         SCALE_BOUNDS, generator, prior_history=history)
        dp_record.update(epsilon=spent["epsilon"], history=spent["history"],
                         steps=int(sum(h[2] for h in spent["history"])))
        record.update(private=True, epsilon_share=float(spec.epsilon_share), noise_multiplier=float(noise),
                      max_grad_norm=PRIVATE_MAX_GRAD_NORM, steps=PRIVATE_STEPS, source="held-out labelled training rows, DP-SGD composed with the other phases")
    before = predict_proba(model, X_test) if errors else None
    fold_scale(model, scale)
    record.update(temperature=float(1.0 / scale))
    if errors:
        record.update(
            ece_before=expected_calibration_error(data.y_test, before, n_bins),
            ece_after=expected_calibration_error(data.y_test, predict_proba(model, X_test), n_bins),
            ece_split=f"test split ({len(data.y_test):,} rows, {n_bins} bins)",
        )
    return record, model


def _train_baseline(plan, arch, X_lab, y_lab, dp, seed, progress):
    """The supervised-only model: same architecture, labelled rows, epochs and DP target, no
    pretraining, all layers trained. Evidence for the label_efficiency check; not released."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = build_classifier(arch)
    noise = None
    if dp is not None:
        from govssl.train._dp import calibrate_phases, poisson_schedule

        fine = poisson_schedule(len(X_lab), min(plan.training.finetune.batch_size, len(X_lab)), plan.training.finetune.epochs)
        (noise,) = calibrate_phases(dp, [fine])
    model, _, dp_record = _downstream(model, arch, X_lab, y_lab, plan.training, dp, seed,
                                      progress, "fine_tune", noise=noise)
    record = {
        "mode": "fine_tune",
        "pretraining": "none",
        "n_labelled_rows": int(len(X_lab)),
        "epochs": int(plan.training.finetune.epochs),
        "epsilon": dp_record["epsilon"] if dp_record else None,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return model, record


def _plain_copy(model: nn.Module, arch: Architecture) -> nn.Sequential:
    """A fresh module with the trained weights: no Opacus hooks, no frozen flags, eval mode."""
    plain = build_classifier(arch)
    plain.load_state_dict(model.state_dict())
    return plain.eval()
