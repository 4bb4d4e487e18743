"""Poisoning and backdoors: how exposed the training recipe is, and whether detectors would see it.

Exposure: a backdoor (Gu et al. 2017, "BadNets") is injected with ART's PoisoningAttackBackdoor
into a copy of the training data at each of the plan's rates (rows of other classes get the
trigger and the target label), the model is retrained with the same recipe (the shorter budget
used is recorded), and we report the attack success rate (triggered test rows of other classes
classified as the target) and the clean-accuracy drop against a clean retrain with the same
budget. Triggers: a pixel pattern near the bottom-right corner for images, feature values for
tables (mutable numeric features set to the top of their training range).

Cost: the retrains read at most ``max_retrain_rows`` training rows (100,000 by default), a seeded
uniform sample that stands in for the training table when it is larger (rates, labelled fraction,
detectors and the SSL encoder apply to the sample; every test row is used), so that the check's
cost stops growing with the table. A table no larger than the cap is retrained on whole, as with
``max_retrain_rows: null``. docs/poisoning.md gives the measured trade-off.

Detection, at a fixed flagging budget: each detector scores every labelled row of the poisoned
copy and flags its top ``flag_budget x rate`` share (1.5 x the poison rate by default), so that
detectors are compared at the same cost to the data owner rather than at each one's own split.
Recall and precision against the known poison rows are reported with their power: the chance
recall (the budget share), the smallest recall a one-sided exact binomial test tells from chance
at p < 0.05, the p-value, and the Clopper-Pearson interval of the recall. ``best_detector_recall``
names the best detector and representation. Detectors: ART's ActivationDefence (activation
clustering; Chen et al. 2018, "Detecting backdoor attacks on deep neural networks by activation
clustering"), ART's spectral signature score (Tran et al. 2018, "Spectral signatures in backdoor
attacks") and SPECTRE (Hayase et al. 2021, "SPECTRE: Defending against backdoor attacks using
robust statistics", ICML), whose robust whitening suits the few, low-dimensional rows of tables.
Representations: the classifier's penultimate layer, and the plan's self-supervised encoder
pretrained on the poisoned rows (its representation has seen no label, so a trigger in the
features is not yet folded into the target class). On the real training data: the share of each
class each detector flags at the budget for ``expected_poison``.

ART's defences read the last layer of a Sequential model, which for a classifier is the logits
(and ART extracts PyTorch activations only from nn.Sequential, ART issue 1810), so ART gets the
penultimate activations themselves, through an identity estimator.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from pydantic import Field

from govssl.checks._art import art_classifier, input_space, is_image, penultimate, seeded
from govssl.checks._binomial import clopper_pearson
from govssl.checks.base import (
    Check, CheckContext, CheckParams, Confidence, Measurement, PositiveInt, Share, register_check,
)

__all__ = ["PoisoningCheck", "backdoor_trigger", "poison_copy", "detector_scores", "spectre_scores", "flag_top",
           "detection_power", "retrain_sample", "DETECTORS", "MAX_RETRAIN_ROWS"]

DETECTORS = ("activation_clustering", "spectral_signature", "spectre")
REPRESENTATIONS = ("penultimate", "ssl_encoder")
#: default cap on the training rows the retrains read (``max_retrain_rows``); see docs/poisoning.md
#: for the measurement behind it
MAX_RETRAIN_ROWS = 100_000
#: the smallest cap accepted: at 10% labels, 1,000 rows hold about 1 labelled poison row at a 1%
#: rate and 5 at 5%; each recall's power details state what its sample can show
MIN_RETRAIN_ROWS = 1_000


def backdoor_trigger(X: np.ndarray, columns: list[int] | None = None, values: np.ndarray | None = None) -> Callable:
    """The trigger as a function of a batch: ART's pixel pattern for images (N x C x H x W),
    fixed values in ``columns`` for tables."""
    if is_image(X):
        from art.attacks.poisoning.perturbations import add_pattern_bd

        high = float(np.max(X))
        return lambda x: add_pattern_bd(x, distance=1, pixel_value=high, channels_first=True)
    columns = list(columns or [])
    values = np.asarray(values, dtype=np.float32)

    def set_values(x: np.ndarray) -> np.ndarray:
        x = np.array(x, dtype=np.float32, copy=True)
        x[:, columns] = values
        return x

    return set_values


def poison_copy(X: np.ndarray, y: np.ndarray, trigger: Callable, rate: float, target: int,
                seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, poison row indices): ``rate`` of the rows, drawn from other classes, triggered and
    relabelled to ``target`` by ART's PoisoningAttackBackdoor."""
    from art.attacks.poisoning import PoisoningAttackBackdoor

    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(y != target)
    n_poison = min(len(candidates), int(round(rate * len(y))))
    rows = np.sort(rng.choice(candidates, size=n_poison, replace=False))
    X_p, y_p = np.array(X, copy=True), np.array(y, copy=True)
    if n_poison:
        x_bd, y_bd = PoisoningAttackBackdoor(trigger).poison(X[rows], y=np.full(n_poison, target), broadcast=False)
        X_p[rows], y_p[rows] = x_bd, y_bd
    return X_p, y_p, rows


def retrain_sample(n_rows: int, cap: int | None, seed: int) -> np.ndarray | None:
    """The training rows the retrains read: ``None`` (all of them) when ``cap`` is ``None`` or not
    below ``n_rows``, else ``cap`` rows drawn uniformly without replacement (seeded), sorted."""
    if cap is None or n_rows <= cap:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=cap, replace=False))


def _identity_estimator(width: int, n_classes: int):
    import torch

    return art_classifier(torch.nn.Sequential(torch.nn.Identity()), (width,), n_classes)


def _per_class_scale(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Scores divided by their class's median, so that one ranking across classes flags the rows
    that stand out most within their own class (a backdoor sits in the target class only)."""
    out = np.zeros(len(scores), np.float64)
    for c in np.unique(y):
        rows = y == c
        median = float(np.median(scores[rows]))
        out[rows] = scores[rows] / median if median > 0 else scores[rows]
    return out


def spectre_scores(acts: np.ndarray, *, dims: int = 16, alpha: float = 4.0, seed: int = 0) -> np.ndarray:
    """SPECTRE outlier scores of one class's representations (Hayase et al. 2021, "SPECTRE:
    Defending against backdoor attacks using robust statistics", ICML): project on the top
    ``dims`` principal directions, whiten with a robust estimate of the mean and covariance (here
    the minimum covariance determinant, Rousseeuw 1984, from scikit-learn), then score each row by
    quantum entropy (QUE): ``z' Q z / tr(Q)`` with ``Q = exp(alpha (S - I) / (||S|| - 1))``, ``S``
    the covariance of the whitened rows. Whitening by a covariance the poison cannot inflate makes
    the poison's direction stand out even where it is not the top direction of the raw data."""
    from scipy.linalg import expm
    from sklearn.covariance import MinCovDet

    X = np.asarray(acts, np.float64)
    n = len(X)
    if n < 4:
        return np.zeros(n)
    centred = X - X.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = int(min(dims, np.sum(singular > singular[0] * 1e-6), n // 2))
    Z = centred @ vt[:k].T
    # the robust estimate is fitted on at most 1,000 rows (seeded), every row is scored
    fit_rows = np.random.default_rng(seed).choice(n, size=min(n, 1000), replace=False)
    robust = MinCovDet(random_state=seed, support_fraction=None).fit(Z[fit_rows])
    values, vectors = np.linalg.eigh(robust.covariance_)
    values = np.maximum(values, values.max() * 1e-9)
    W = (Z - robust.location_) @ vectors / np.sqrt(values)
    S = W.T @ W / n
    norm = float(np.linalg.norm(S, 2))
    Q = expm(alpha * (S - np.eye(k)) / (norm - 1)) if norm > 1 + 1e-9 else np.eye(k)
    return np.einsum("ij,jk,ik->i", W, Q, W) / np.trace(Q)


def detector_scores(activations: np.ndarray, y: np.ndarray, n_classes: int, *, detectors=DETECTORS,
                    seed: int, spectre_dims: int = 16) -> dict[str, np.ndarray]:
    """Per detector, a suspicion score for each row (higher: more likely poison), comparable
    across classes, so that a flagging budget takes the top rows of one ranking.

    ``activation_clustering``: ART's ActivationDefence (2 clusters of the 10-dimensional PCA of
    each class); rows of the smaller cluster rank first, each cluster's rows by their distance
    to the larger cluster's centre. ``spectral_signature``: ART's score, the projection on the
    top singular vector of the class's centred activations (Tran et al. centre them; ART does
    not, so they are centred here). ``spectre``: :func:`spectre_scores`. Spectral and SPECTRE
    scores are divided by their class's median.
    """
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense

    y = np.asarray(y, dtype=np.int64)
    acts = activations.astype(np.float32)
    out = {}
    with seeded(seed):
        if "activation_clustering" in detectors:
            onehot = np.eye(n_classes, dtype=np.float32)[y]
            clustering = ActivationDefence(_identity_estimator(acts.shape[1], n_classes), acts, onehot)
            clustering.detect_poison(nb_clusters=2, nb_dims=min(10, acts.shape[1]), reduce="PCA",
                                     cluster_analysis="smaller")
            scores = np.zeros(len(y), np.float64)
            for c, (clusters, reduced) in enumerate(zip(clustering.clusters_by_class,
                                                        clustering.red_activations_by_class)):
                rows = np.flatnonzero(y == c)  # ART segments the rows by class, in order
                if not len(rows):
                    continue
                clusters = np.asarray(clusters)
                sizes = np.bincount(clusters, minlength=2)
                large = int(np.argmax(sizes))
                distance = np.linalg.norm(reduced - reduced[clusters == large].mean(axis=0), axis=1)
                scale = float(np.median(distance)) or 1.0
                scores[rows] = distance / scale + np.where(clusters != large, 1e6, 0.0)
            out["activation_clustering"] = scores
        if "spectral_signature" in detectors:
            scores = np.zeros(len(y), np.float64)
            for c in np.unique(y):
                rows = y == c
                centred = acts[rows] - acts[rows].mean(axis=0)
                scores[rows] = SpectralSignatureDefense.spectral_signature_scores(centred).ravel()
            out["spectral_signature"] = _per_class_scale(scores, y)
        if "spectre" in detectors:
            scores = np.zeros(len(y), np.float64)
            for c in np.unique(y):
                rows = y == c
                scores[rows] = spectre_scores(acts[rows], dims=spectre_dims, seed=seed)
            out["spectre"] = _per_class_scale(scores, y)
    return out


def flag_top(scores: np.ndarray, share: float) -> np.ndarray:
    """Boolean flags on the ``round(share * n)`` highest scores (ties broken by row order)."""
    n_flag = int(min(len(scores), max(1, round(share * len(scores)))))
    flagged = np.zeros(len(scores), bool)
    flagged[np.argsort(-scores, kind="stable")[:n_flag]] = True
    return flagged


def detection_power(n_poison: int, share: float, true_positives: int, confidence: float,
                    level: float = 0.05) -> dict:
    """What a recall at this budget can show: chance recall (a detector that flags ``share`` of
    the rows at random finds that share of the poison), the smallest recall whose one-sided
    binomial test against chance has p < ``level``, the p-value of the recall seen, and its
    Clopper-Pearson interval."""
    from scipy.stats import binom

    low, high = clopper_pearson(true_positives, n_poison, confidence)
    critical = float("nan")
    if n_poison:
        # smallest k with P(Binomial(n_poison, share) >= k) < level
        k = int(binom.isf(level, n_poison, share)) + 1
        critical = min(k, n_poison + 1) / n_poison
    p_value = float(binom.sf(true_positives - 1, n_poison, share)) if n_poison else float("nan")
    return {"chance_recall": float(share), "recall_needed_for_p_below": level,
            "min_detectable_recall": critical if critical <= 1 else float("nan"),
            "detectable_at_this_budget": bool(critical <= 1),
            "p_value_vs_chance": p_value, "recall_ci": [low, high], "recall_ci_confidence": confidence,
            "test": "one-sided exact binomial, chance recall = budget share; interval clopper-pearson"}


@register_check("poisoning")
class PoisoningCheck(Check):
    metrics = ("backdoor_success_rate", "clean_accuracy_drop", "detector_precision", "detector_recall",
               "best_detector_recall", "best_detector_precision", "flagged_fraction")

    class Params(CheckParams):
        rates: list[Share] = Field(default_factory=lambda: [0.01, 0.05], min_length=1)  # shares of the training rows poisoned
        target_label: int = Field(0, ge=0)  # class index the backdoor flips to (checked against the model's classes)
        # tables: names of numeric features; default (null) the first two mutable ones
        trigger_features: list[str] | None = Field(None, min_length=1)
        immutable: list[str] = []
        sensitive_immutable: bool = True
        retrain_pretrain_epochs: int | None = Field(1, ge=0)  # the shorter budget for retraining (null = the plan's)
        retrain_finetune_epochs: PositiveInt | None = None
        # the clean and poisoned retrains read at most this many training rows, a seeded uniform
        # sample (the rates apply to it); null: every row, at a cost that grows with the table
        max_retrain_rows: int | None = Field(MAX_RETRAIN_ROWS, ge=MIN_RETRAIN_ROWS)
        detectors: list[Literal["activation_clustering", "spectral_signature", "spectre"]] = Field(
            default_factory=lambda: list(DETECTORS), min_length=1)
        # representations the detectors read: the classifier's penultimate layer, and the plan's
        # self-supervised encoder fitted on the poisoned rows (when the plan pretrains)
        representations: list[Literal["penultimate", "ssl_encoder"]] = Field(
            default_factory=lambda: list(REPRESENTATIONS), min_length=1)
        # each detector flags its top (flag_budget x poison rate) share of the rows it reads
        flag_budget: float = Field(1.5, ge=1.0, le=10.0)
        spectre_dims: int = Field(16, ge=2, le=256)  # SPECTRE's principal directions
        expected_poison: Share = 0.05  # on the real training rows: the share of poison to budget for
        max_detection_rows: PositiveInt = 5000
        confidence: Confidence = 0.95

    def measure(self, ctx: CheckContext) -> list[Measurement]:
        p = self.params
        data, trained = ctx.dataset, ctx.train
        n_classes = int(trained.model[-1].out_features)
        target = int(p["target_label"])
        if not 0 <= target < n_classes:
            raise ValueError(f"checks.poisoning.target_label: must be a class index in [0, {n_classes - 1}]; got {target}")
        trigger, trigger_info = self._trigger(data)
        out = self._detection_on_real_data(ctx, n_classes)
        if ctx.plan is None:
            return out
        budget = self._budget(ctx.plan)
        retrain = self._retrainer(ctx, budget)
        represent = self._representer(ctx, budget)
        X_train, y_train = data.X_train, np.asarray(data.y_train)
        cap = p["max_retrain_rows"]
        sample = retrain_sample(len(y_train), cap, ctx.seed + 67)
        rows_info = {"n_training_rows": int(len(y_train)), "max_retrain_rows": cap,
                     "n_retrain_rows": int(len(y_train) if sample is None else len(sample)),
                     "subsampled": sample is not None}
        if sample is not None:
            X_train, y_train = X_train[sample], y_train[sample]
            rows_info["sample"] = ("uniform without replacement, seeded; the rates, the labelled fraction and "
                                   "the detectors apply to the sample, the test rows are all used")
        out += exposure(self.name, X_train, y_train, data.X_test, np.asarray(data.y_test),
                        retrain, trigger, rates=[float(r) for r in p["rates"]], target=target, n_classes=n_classes,
                        seed=ctx.seed, confidence=float(p["confidence"]), flag_budget=float(p["flag_budget"]),
                        detectors=tuple(p["detectors"]), represent=represent, spectre_dims=int(p["spectre_dims"]),
                        details={"trigger": trigger_info, "retrain_budget": budget, "retrain_rows": rows_info})
        return out

    def _trigger(self, data) -> tuple[Callable, dict]:
        if is_image(data.X_train):
            return backdoor_trigger(data.X_train), {"kind": "pixel pattern (ART add_pattern_bd, distance 1)"}
        space = input_space(data, list(self.params["immutable"]), bool(self.params["sensitive_immutable"]))
        names = list(self.params["trigger_features"] or space.mutable[:2])
        blocks = dict(data.encoder.groups)
        bad = [n for n in names if n not in space.mutable]
        if bad or not names:
            raise ValueError(f"checks.poisoning.trigger_features: {', '.join(bad) or '(none)'} not a mutable "
                             f"numeric feature; mutable: {', '.join(space.mutable) or 'none'}")
        columns = [blocks[n].start for n in names]
        values = space.clip_max[columns]
        info = {"kind": "feature values", "features": {n: float(v) for n, v in zip(names, values)},
                "space": "encoded (standardised) values: the top of each feature's training range"}
        return backdoor_trigger(data.X_train, columns, values), info

    def _budget(self, plan) -> dict:
        t = plan.training
        pre = self.params["retrain_pretrain_epochs"]
        fine = self.params["retrain_finetune_epochs"]
        return {"pretrain_epochs": int(t.pretrain.epochs if pre is None else min(pre, t.pretrain.epochs)),
                "finetune_epochs": int(t.finetune.epochs if fine is None else fine),
                "plan_pretrain_epochs": int(t.pretrain.epochs), "plan_finetune_epochs": int(t.finetune.epochs),
                "dp": bool(t.dp.enabled)}

    def _retrainer(self, ctx: CheckContext, budget: dict) -> Callable:
        from govssl.progress import NullProgress
        from govssl.train import fit

        t = ctx.plan.training
        training = t.model_copy(update={
            "pretrain": t.pretrain.model_copy(update={"epochs": budget["pretrain_epochs"]}),
            "finetune": t.finetune.model_copy(update={"epochs": budget["finetune_epochs"]}),
            "baseline": False,  # the supervised-only comparison model is not needed to measure a backdoor
        })
        plan = ctx.plan.model_copy(update={"training": training})

        def retrain(X: np.ndarray, y: np.ndarray):
            copy = dataclasses.replace(ctx.dataset, X_train=X, y_train=y)
            with tempfile.TemporaryDirectory() as folder:
                # the retrain's record is not kept: no calibration errors over the test split
                result = fit(plan, copy, Path(folder), ctx.progress or NullProgress(), calibration_errors=False)
            return result.model, result.labelled_rows

        return retrain

    def _representer(self, ctx: CheckContext, budget: dict) -> Callable:
        """``represent(X, model, rows) -> {name: activations of the rows}`` for the plan's
        representations. ``ssl_encoder``: the plan's pretraining method, run without DP for the
        retrain budget's epochs on all rows of ``X`` (the poisoned copy), from a fresh initialisation
        of the classifier's encoder; DP is left out because the detector is the data owner's tool
        and is not released. Left out when the plan does not pretrain."""
        wanted = list(self.params["representations"])
        spec = ctx.plan.training.pretrain
        epochs = int(budget["pretrain_epochs"])
        data = ctx.dataset

        def represent(X: np.ndarray, model, rows: np.ndarray) -> dict[str, np.ndarray]:
            out = {}
            if "penultimate" in wanted:
                out["penultimate"] = penultimate(model, X[rows])
            if "ssl_encoder" in wanted and spec.method != "none" and epochs > 0:
                encoder = ssl_encoder(model, X, spec.model_copy(update={"epochs": epochs}), spec.method,
                                      ctx.seed, data.encoder, ctx.progress)
                out["ssl_encoder"] = penultimate(_with_head(encoder), X[rows])
            return out

        return represent

    def _detection_on_real_data(self, ctx: CheckContext, n_classes: int) -> list[Measurement]:
        """Flags on the real labelled training rows (penultimate layer): the share of each class
        each detector puts in its top ``expected_poison x flag_budget`` of the rows."""
        p = self.params
        rows = np.asarray(ctx.train.labelled_rows)
        rng = np.random.default_rng(ctx.seed + 53)
        cap = int(p["max_detection_rows"])
        if len(rows) > cap:
            rows = np.sort(rng.choice(rows, size=cap, replace=False))
        y = np.asarray(ctx.dataset.y_train[rows])
        share = min(1.0, float(p["expected_poison"]) * float(p["flag_budget"]))
        scores = detector_scores(penultimate(ctx.train.model, ctx.dataset.X_train[rows]), y, n_classes,
                                 detectors=tuple(p["detectors"]), seed=ctx.seed + 59,
                                 spectre_dims=int(p["spectre_dims"]))
        conf = float(p["confidence"])
        out = []
        for detector, score in scores.items():
            flagged = flag_top(score, share)
            for c in range(n_classes):
                in_class = y == c
                k, n = int(flagged[in_class].sum()), int(in_class.sum())
                low, high = clopper_pearson(k, n, conf)
                out.append(Measurement(self.name, "flagged_fraction", k / n if n else float("nan"),
                                       f"{detector} class={c}", low, high, n,
                                       {"detector": detector, "class": c, "data": "labelled training rows",
                                        "n_rows": len(rows), "expected_poison": float(p["expected_poison"]),
                                        "flag_budget": float(p["flag_budget"]), "flagged_share": share,
                                        "activations": "penultimate layer"}))
        return out


def _with_head(encoder):
    """The encoder followed by a placeholder head, so that :func:`penultimate` reads its output."""
    import torch

    return torch.nn.Sequential(*encoder, torch.nn.Identity())


def ssl_encoder(model, X: np.ndarray, spec, method: str, seed: int, table_encoder, progress=None):
    """A fresh copy of ``model``'s encoder (re-initialised with ``seed``) pretrained without labels
    by govssl's trainer (``method``, ``spec``) on the rows ``X``, without DP."""
    import copy

    import torch

    from govssl.progress import NullProgress
    from govssl.train._pretrain import pretrain
    from govssl.train.models import split_classifier

    encoder = copy.deepcopy(split_classifier(model)[0])
    torch.manual_seed(seed)
    for layer in encoder:
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    groups = categorical = None
    if table_encoder is not None:
        groups = [block for _, block in table_encoder.groups]
        categorical = [name in table_encoder.categorical_names for name, _ in table_encoder.groups]
    pretrain(method, encoder, torch.as_tensor(X, dtype=torch.float32), groups, spec, seed,
             progress or NullProgress(), categorical=categorical)
    return encoder.eval()


def _triggered_hits(model, X_test, rows: np.ndarray, trigger: Callable, target: int,
                    block: int = 8 * 8192) -> np.ndarray:
    """Whether ``model`` classifies each of the test ``rows``, with the trigger applied, as
    ``target``; the triggered copies are made a block at a time (a multiple of the prediction
    batch, so the batches are those of one call on all rows), never for the whole test split."""
    from govssl.train.models import predict_proba

    hits = [predict_proba(model, trigger(X_test[rows[start:start + block]]).astype(np.float32)).argmax(axis=1) == target
            for start in range(0, len(rows), block)]
    return np.concatenate(hits) if hits else np.zeros(0, dtype=bool)


def exposure(check: str, X_train, y_train, X_test, y_test, retrain: Callable, trigger: Callable, *,
             rates: list[float], target: int, n_classes: int, seed: int, confidence: float,
             flag_budget: float = 1.5, detectors=DETECTORS, represent: Callable | None = None,
             spectre_dims: int = 16, details: dict) -> list[Measurement]:
    """Backdoor exposure and detector quality. ``retrain(X, y) -> (model, labelled rows)``;
    ``represent(X, model, rows) -> {representation: activations}`` (default: the penultimate layer).

    Each detector flags the top ``flag_budget x rate`` share of the labelled rows of the poisoned
    copy by its score; its recall and precision against the poisoned labelled rows are reported
    with their power (:func:`detection_power`), and ``best_detector_recall`` names the best
    detector and representation at that budget (ties: the higher precision, then the first)."""
    from govssl.train.models import predict_proba

    if represent is None:
        def represent(X, model, rows):
            return {"penultimate": penultimate(model, X[rows])}

    others = np.flatnonzero(np.asarray(y_test) != target)
    clean_model, _ = retrain(X_train, y_train)
    clean_acc = float(np.mean(predict_proba(clean_model, X_test).argmax(axis=1) == y_test))
    clean_asr = float(np.mean(_triggered_hits(clean_model, X_test, others, trigger, target)))
    out = []
    for i, rate in enumerate(rates):
        X_p, y_p, poison = poison_copy(X_train, y_train, trigger, rate, target, seed + 7 * i)
        model, labelled = retrain(X_p, y_p)
        labelled = np.asarray(labelled)
        hits = _triggered_hits(model, X_test, others, trigger, target)
        acc = float(np.mean(predict_proba(model, X_test).argmax(axis=1) == y_test))
        poison_labelled = np.intersect1d(poison, labelled)
        d = {**details, "rate": rate, "target_label": target, "n_poison_rows": int(len(poison)),
             "n_poison_labelled": int(len(poison_labelled)), "n_labelled": int(len(labelled)),
             "clean_retrain_accuracy": clean_acc, "poisoned_retrain_accuracy": acc,
             "clean_retrain_success_rate": clean_asr, "n_test_rows": int(len(y_test))}
        subject = f"rate={rate:g}"
        k, n = int(hits.sum()), int(len(hits))
        low, high = clopper_pearson(k, n, confidence)
        out.append(Measurement(check, "backdoor_success_rate", k / n if n else float("nan"), subject, low, high, n,
                               {**d, "interval": "clopper-pearson", "confidence": confidence}))
        out.append(Measurement(check, "clean_accuracy_drop", clean_acc - acc, subject, n=int(len(y_test)), details=d))
        is_poison = np.isin(labelled, poison)
        share = min(1.0, flag_budget * rate)
        found = []
        for representation, acts in represent(X_p, model, labelled).items():
            scores = detector_scores(acts, y_p[labelled], n_classes, detectors=detectors, seed=seed + 11 * i,
                                     spectre_dims=spectre_dims)
            for detector, score in scores.items():
                flagged = flag_top(score, share)
                tp, n_poison = int(np.sum(flagged & is_poison)), int(is_poison.sum())
                precision = tp / int(flagged.sum()) if flagged.any() else float("nan")
                recall = tp / n_poison if n_poison else float("nan")
                dd = {**d, "detector": detector, "representation": representation, "flag_budget": flag_budget,
                      "flagged_share": share, "flagged": int(flagged.sum()), "true_positives": tp,
                      "power": detection_power(n_poison, share, tp, confidence)}
                name = f"{detector} {representation} {subject}"
                out.append(Measurement(check, "detector_precision", float(precision), name,
                                       n=int(flagged.sum()), details=dd))
                low, high = dd["power"]["recall_ci"]
                out.append(Measurement(check, "detector_recall", float(recall), name, low, high,
                                       n=n_poison, details=dd))
                found.append((recall, precision, detector, representation, dd))
        ranked = [f for f in found if np.isfinite(f[0])]
        if ranked:
            best = max(ranked, key=lambda f: (f[0], f[1] if np.isfinite(f[1]) else -1.0))
            recall, precision, detector, representation, dd = best
            bd = {**dd, "best_of": sorted(f"{f[2]} {f[3]}" for f in found)}
            low, high = dd["power"]["recall_ci"]
            out.append(Measurement(check, "best_detector_recall", float(recall), subject, low, high,
                                   n=int(is_poison.sum()), details=bd))
            out.append(Measurement(check, "best_detector_precision", float(precision), subject,
                                   n=dd["flagged"], details=bd))
    return out
