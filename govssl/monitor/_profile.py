"""The reference profile: what monitoring needs to know about the audited model, stored with the run.

Computed at audit time from the **test split** (never the training rows) and written as one
NumPy ``.npz`` file (``reference_profile.npz``), a chained artifact of the run: its path and
sha256 enter the ledger with the run, and ``govssl monitor`` refuses a profile whose bytes no
longer have that sha256. It holds:

- the schema of the plan's data (each column numeric or text) and the model's input encoding
  (for each numeric feature the mean and standard deviation used to standardise it, for each
  categorical one its levels, as in the model file): without it a batch cannot be scored;
- per feature, the test split's distribution: numeric values with their counts (or, past
  ``MAX_DISTINCT`` distinct values, that many quantiles), decile bins for PSI / JS, and
  categorical level counts;
- the calibrated scores of the test rows and, in ``CALIBRATION_BINS`` confidence bins, their
  counts and correct predictions (confidence-based performance estimation calibrates with them);
- per sensitive feature, the test split's group counts, selection rates and accuracies;
- the encoder's embeddings of at most ``EMBED_REFERENCE`` test rows (the drift reference), the
  median-heuristic kernel bandwidth, and, from at most ``EMBED_HOLDOUT`` other test rows, the
  distance to the reference past which a row counts as out of distribution;
- the reference accuracy on the test split.

Not covered by a differential-privacy guarantee: the profile is computed from the test rows,
which DP-SGD never reads, and it releases their statistics (and 1,000 of their embeddings) as
they are. The standardisation means and deviations come from the training rows and are as
private as the model's input encoding already was (not at all: they are exact statistics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from govssl.errors import IntegrityError

__all__ = ["build_profile", "write_profile", "load_profile", "Profile", "PROFILE_NAME", "embed_and_score"]

PROFILE_NAME = "reference_profile.npz"
FORMAT = 1
MAX_DISTINCT = 2_000
EMBED_REFERENCE = 1_000
EMBED_HOLDOUT = 1_000
OOD_QUANTILE = 0.99
CALIBRATION_BINS = 15
PSI_BINS = 10


@dataclass
class Profile:
    meta: dict
    scores: np.ndarray  # calibrated probability of the positive class, test rows
    embed_reference: np.ndarray
    sha256: str = ""
    path: str = ""


def embed_and_score(model, X: np.ndarray, sample: np.ndarray | None = None, chunk: int = 8192):
    """(probabilities of every row, embeddings of the rows in ``sample``) from one forward pass
    per chunk: the encoder's output is the head's input."""
    import torch

    encoder, head = torch.nn.Sequential(*list(model)[:-1]), model[-1]
    model.eval()
    sample = np.sort(sample) if sample is not None else np.zeros(0, dtype=np.int64)
    # filled in place (see govssl.train.models.predict_proba: no small array kept per chunk)
    proba = np.empty((len(X), head.out_features), dtype=np.float32)
    embeds = np.empty((len(sample), head.in_features), dtype=np.float32)
    done = 0
    with torch.no_grad():
        for start in range(0, len(X), chunk):
            xb = torch.as_tensor(np.asarray(X[start:start + chunk], dtype=np.float32))
            z = encoder(xb)
            proba[start:start + len(xb)] = torch.softmax(head(z), dim=1).numpy()
            wanted = sample[(sample >= start) & (sample < start + len(xb))] - start
            if len(wanted):
                embeds[done:done + len(wanted)] = z[torch.as_tensor(wanted)].numpy()
                done += len(wanted)
    return proba, embeds[:done]


def _numeric_reference(x: np.ndarray) -> dict:
    values, counts = np.unique(x, return_counts=True)
    if len(values) > MAX_DISTINCT:
        values = np.quantile(x, (np.arange(MAX_DISTINCT) + 0.5) / MAX_DISTINCT)
        values, counts = np.unique(values, return_counts=True)
        counts = counts * (len(x) / counts.sum())
        kind = "quantiles"
    else:
        kind = "exact"
    edges = np.unique(np.quantile(x, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    bin_counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
    return {"kind": "numeric", "sketch": kind, "n": int(len(x)), "values": values.tolist(),
            "counts": np.asarray(counts, dtype=np.float64).tolist(), "edges": edges.tolist(),
            "bin_counts": bin_counts.tolist()}


def _categorical_reference(series: pd.Series, model_levels) -> dict:
    """The test split's counts over the model's own levels of the column (declared, or held by at
    least MIN_LEVEL_ROWS training rows): a value outside them is counted under OTHER, never named,
    so no rare value (a name, a case number) reaches the profile file."""
    from govssl.data._table import OTHER, category_counts

    counts = category_counts(series)  # as_category_strings(series).value_counts(), from the codes
    levels = [str(v) for v in model_levels if v != OTHER]
    kept = [int(counts.get(level, 0)) for level in levels]
    other = int(len(series)) - sum(kept)
    if other or OTHER in model_levels:
        levels, kept = levels + [OTHER], kept + [other]
    return {"kind": "categorical", "n": int(len(series)), "levels": levels, "counts": kept}


def _column_kind(series: pd.Series) -> str:
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return "number" if numeric else "text"


def build_profile(dataset, model, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """(meta, test scores, reference embeddings) of a tabular dataset's test split."""
    from govssl.checks.performance import calibration_bins
    from govssl.monitor._stats import median_bandwidth, nearest_distance

    test, enc = dataset.test, dataset.encoder
    n = len(test)
    rng = np.random.default_rng(seed + 14)
    order = rng.permutation(n)
    n_ref = min(EMBED_REFERENCE, n // 2)
    ref_rows, hold_rows = order[:n_ref], order[n_ref:n_ref + min(EMBED_HOLDOUT, n - n_ref)]
    picked = np.concatenate([ref_rows, hold_rows])
    proba, embeds = embed_and_score(model, dataset.X_test, picked)
    by_row = dict(zip(np.sort(picked).tolist(), range(len(picked))))
    reference = embeds[[by_row[i] for i in ref_rows.tolist()]].astype(np.float32)
    holdout = embeds[[by_row[i] for i in hold_rows.tolist()]]
    bandwidth = median_bandwidth(reference.astype(np.float64))
    hold_dist = nearest_distance(holdout, reference.astype(np.float64))
    threshold = float(np.quantile(hold_dist, OOD_QUANTILE)) if len(hold_dist) else float("inf")

    pred = proba.argmax(axis=1)
    y = dataset.y_test
    confidence = proba.max(axis=1)
    bins = calibration_bins(confidence, CALIBRATION_BINS)
    correct = (pred == y)
    sensitive = dataset.sensitive_frame("test")
    groups = {}
    for col in dataset.sensitive:
        labels = sensitive[col].to_numpy(dtype=object)
        levels = sorted(set(labels.tolist()))
        groups[col] = {
            "levels": levels,
            "counts": [int((labels == g).sum()) for g in levels],
            "selection_rate": [float(pred[labels == g].mean()) for g in levels],
            "accuracy": [float(correct[labels == g].mean()) for g in levels],
        }
    features = {}
    for name in enc.numeric_names:
        features[name] = _numeric_reference(test[name].to_numpy(dtype=np.float64))
    for spec in enc.categorical:
        features[spec.name] = _categorical_reference(test[spec.name], spec.levels)
    meta = {
        "format": FORMAT,
        "source": "test split",
        "n_rows": int(n),
        "columns": {str(c): _column_kind(test[c]) for c in test.columns},
        "target": dataset.target,
        "positive_label": dataset.positive_label,
        "classes": list(dataset.classes),
        "sensitive": list(dataset.sensitive),
        "numeric": list(enc.numeric_names),
        "categorical": list(enc.categorical_names),
        "encoder": {
            "numeric": [{"name": c.name, "log": c.log, "mean": c.mean, "std": c.std} for c in enc.numeric],
            "categorical": [{"name": c.name, "levels": list(c.levels)} for c in enc.categorical],
            "declared_levels": enc.declared_levels,
            "min_rows": enc.min_rows,
        },
        "features": features,
        "calibration": {
            "bins": CALIBRATION_BINS,
            "counts": np.bincount(bins, minlength=CALIBRATION_BINS).tolist(),
            "correct": np.bincount(bins, weights=correct, minlength=CALIBRATION_BINS).astype(int).tolist(),
        },
        "performance": {"accuracy": float(correct.mean()), "n": int(n),
                        "estimated_accuracy": float(confidence.mean())},
        "groups": groups,
        "embedding": {
            "dim": int(reference.shape[1]), "n_reference": int(len(reference)), "n_holdout": int(len(holdout)),
            "bandwidth": bandwidth, "ood_quantile": OOD_QUANTILE, "ood_threshold": threshold,
            "holdout_beyond": int((hold_dist > threshold).sum()),
        },
    }
    return meta, proba[:, 1].astype(np.float32), reference


def write_profile(path: Path, meta: dict, scores: np.ndarray, reference: np.ndarray) -> Path:
    with open(path, "wb") as fh:
        np.savez_compressed(fh, meta=np.array(json.dumps(meta, sort_keys=True)), scores=scores,
                            embed_reference=reference)
    return path


def load_profile(path: str | Path, expected_sha256: str) -> Profile:
    """The profile at ``path`` after checking its bytes against the sha256 the ledger recorded
    (IntegrityError, exit 3, when they differ or the file is gone)."""
    path = Path(path)
    check_recorded(path, expected_sha256, "reference profile")
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        return Profile(meta=meta, scores=data["scores"], embed_reference=data["embed_reference"],
                       sha256=expected_sha256, path=str(path))


def check_recorded(path: Path, expected_sha256: str, what: str) -> None:
    """IntegrityError (exit 3) unless the file at ``path`` (the run's ``what``) has the sha256 the
    ledger recorded for it."""
    from govssl.records import sha256_file

    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise IntegrityError(f"{path}: cannot read the run's {what}: {exc.strerror or exc}") from None
    if actual != expected_sha256:
        raise IntegrityError(f"{path}: the {what} changed after the audit: its sha256 is {actual}, "
                             f"the store records {expected_sha256}")
