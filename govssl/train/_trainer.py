"""The trainer: SSL pretraining of the encoder, then the classifier on a fraction of the labels.

Differential privacy (DP-SGD with Opacus) covers the supervised phase when the plan enables it.
The record says which phases were private (``dp_scope``); a guarantee for the training data holds
end to end only if no phase read the private rows without DP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from govssl.records import TrainRecord, sha256_file
from govssl.train.models import Architecture, build_classifier, build_encoder, predict_proba, split_classifier
from govssl.train.scarf import InfoNCELoss, ScarfCorruption

__all__ = ["TrainResult", "fit", "label_subset"]


@dataclass
class TrainResult:
    """The trained classifier (a plain module, no DP hooks) and what the trainer did."""

    model: nn.Sequential
    architecture: Architecture
    record: TrainRecord
    labelled_rows: np.ndarray  # indices into the training rows whose labels were used

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return predict_proba(self.model, X)


def label_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Stratified ``fraction`` of the rows (at least one per class), sorted, the same for a seed."""
    rng = np.random.default_rng(seed + 1)
    chosen = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        take = max(1, int(round(len(rows) * fraction)))
        chosen.append(rng.choice(rows, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


def _batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) >= 2:
            yield idx


def _pretrain_scarf(encoder: nn.Sequential, X: torch.Tensor, groups, spec, seed: int, progress) -> list[float]:
    width = encoder[-2].out_features if isinstance(encoder[-1], nn.ReLU) else encoder[-1].out_features
    projector = nn.Sequential(nn.Linear(width, spec.projection_dim), nn.ReLU(), nn.Linear(spec.projection_dim, spec.projection_dim))
    corrupt = ScarfCorruption(X, groups, spec.corruption_rate)
    loss_fn = InfoNCELoss(spec.temperature)
    params = list(encoder.parameters()) + list(projector.parameters())
    optimizer = torch.optim.Adam(params, lr=spec.lr)
    generator = torch.Generator().manual_seed(seed)
    n_batches = (len(X) + spec.batch_size - 1) // spec.batch_size
    losses = []
    encoder.train()
    with progress.task(f"pretraining encoder (SCARF, {len(X):,} rows, no labels)", spec.epochs * n_batches) as task:
        for _ in range(spec.epochs):
            total, count = 0.0, 0
            for idx in _batches(len(X), spec.batch_size, generator):
                x = X[idx]
                loss = loss_fn(projector(encoder(x)), projector(encoder(corrupt(x, generator))))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, count = total + loss.item() * len(idx), count + len(idx)
                task.advance(1, loss=loss.item())
            losses.append(total / max(count, 1))
    return losses


def _supervised(model: nn.Module, params, X: torch.Tensor, y: torch.Tensor, spec, dp, seed: int, progress, label: str):
    """Plain or DP-SGD (Opacus, Poisson sampling) training; returns (trained module, losses, dp record)."""
    optimizer = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    batch_size = min(spec.batch_size, len(X))
    dp_record = None
    if dp is not None and dp.enabled:
        from govssl.train._dp import make_private, quiet_opacus

        quiet_opacus()
        model, optimizer, loss_fn, loader, engine = make_private(
            model, optimizer, loss_fn, X, y, batch_size, spec.epochs, dp, generator
        )
        batches_per_epoch = len(loader)
    else:
        loader, engine = None, None
        batches_per_epoch = (len(X) + batch_size - 1) // batch_size
    losses = []
    model.train()
    with progress.task(label, spec.epochs * batches_per_epoch) as task:
        for _ in range(spec.epochs):
            total, count = 0.0, 0
            batches = loader if loader is not None else (
                (X[idx], y[idx]) for idx in _batches(len(X), batch_size, generator)
            )
            for xb, yb in batches:
                if len(xb) == 0:  # Poisson sampling may draw an empty batch
                    task.advance(1)
                    continue
                loss = loss_fn(model(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, count = total + loss.item() * len(xb), count + len(xb)
                task.advance(1, loss=loss.item())
            losses.append(total / max(count, 1))
    if engine is not None:
        from govssl.train._dp import dp_record_of, unwrap

        dp_record = dp_record_of(engine, optimizer, dp, batch_size / len(X))
        model = unwrap(model)
    return model, losses, dp_record


def fit(plan, data, out_dir: Path, progress) -> TrainResult:
    """Train the plan's model on ``data`` (a Dataset); save it as safetensors in ``out_dir``."""
    spec = plan.training
    seed = plan.seed
    started = time.perf_counter()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)

    X_all = torch.as_tensor(data.X_train, dtype=torch.float32)
    arch = Architecture(
        in_dim=int(X_all.shape[1]),
        hidden_dims=list(spec.encoder.hidden_dims),
        dropout=float(spec.encoder.dropout),
        n_classes=2,
        feature_names=list(data.encoder.feature_names),
    )
    model = build_classifier(arch)
    encoder, head = split_classifier(model)

    history: dict[str, list[float]] = {}
    if spec.pretrain.method == "scarf" and spec.pretrain.epochs > 0:
        groups = [block for _, block in data.encoder.groups]
        history["pretrain_loss"] = _pretrain_scarf(encoder, X_all, groups, spec.pretrain, seed, progress)
    pretrained = "pretrain_loss" in history

    rows = label_subset(data.y_train, spec.finetune.label_fraction, seed)
    X_lab = X_all[rows]
    y_lab = torch.as_tensor(data.y_train[rows], dtype=torch.long)
    dp = spec.dp if spec.dp.enabled else None
    mode = spec.finetune.mode
    if mode == "linear_probe":
        # The encoder is frozen: train the head on fixed embeddings (the same optimisation, cheaper).
        encoder.eval()
        with torch.no_grad():
            Z = encoder(X_lab)
        head, losses, dp_record = _supervised(
            head, list(head.parameters()), Z, y_lab, spec.finetune, dp, seed,
            progress, f"training linear probe on {len(rows):,} labelled rows" + (" (DP-SGD)" if dp else ""),
        )
        model = nn.Sequential(*encoder, head)
        dp_scope = "head" if dp else "none"
    else:
        model, losses, dp_record = _supervised(
            model, list(model.parameters()), X_lab, y_lab, spec.finetune, dp, seed,
            progress, f"fine-tuning on {len(rows):,} labelled rows" + (" (DP-SGD)" if dp else ""),
        )
        dp_scope = "finetune" if dp else "none"
    history["finetune_loss"] = losses
    model = _plain_copy(model, arch)

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "model.safetensors"
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(model_path),
        # One key only: safetensors writes metadata keys in hash-map order, which varies between
        # calls, and the file's sha256 must not.
        metadata={"govssl_architecture": arch.to_json()},
    )
    record = TrainRecord(
        method=spec.pretrain.method if pretrained else "none",
        finetune_mode=mode,
        label_fraction=spec.finetune.label_fraction,
        n_pretrain_rows=len(X_all) if pretrained else 0,
        n_labelled_rows=int(len(rows)),
        pretrain_epochs=spec.pretrain.epochs if pretrained else 0,
        finetune_epochs=spec.finetune.epochs,
        dp_scope=dp_scope,
        # Only private if no phase read the private rows without DP.
        end_to_end_dp=bool(dp is not None and not pretrained),
        dp=dp_record,
        model_path=str(model_path.resolve()),
        model_sha256=sha256_file(model_path),
        architecture=arch.text,
        n_parameters=sum(p.numel() for p in model.parameters()),
        seed=seed,
        seconds=round(time.perf_counter() - started, 3),
        history=history,
    )
    return TrainResult(model=model, architecture=arch, record=record, labelled_rows=rows)


def _plain_copy(model: nn.Module, arch: Architecture) -> nn.Sequential:
    """A fresh module with the trained weights: no Opacus hooks, no frozen flags, eval mode."""
    plain = build_classifier(arch)
    plain.load_state_dict(model.state_dict())
    return plain.eval()
