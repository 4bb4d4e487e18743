"""Poisoning and backdoors: how exposed the training recipe is, and whether detectors would see it.

Exposure: a backdoor (Gu et al. 2017, "BadNets") is injected with ART's PoisoningAttackBackdoor
into a copy of the training data at each of the plan's rates (rows of other classes get the
trigger and the target label), the model is retrained with the same recipe (the shorter budget
used is recorded), and we report the attack success rate (triggered test rows of other classes
classified as the target) and the clean-accuracy drop against a clean retrain with the same
budget. Triggers: a pixel pattern near the bottom-right corner for images, feature values for
tables (mutable numeric features set to the top of their training range).

Detection: ART's ActivationDefence (activation clustering; Chen et al. 2018, "Detecting backdoor
attacks on deep neural networks by activation clustering") and SpectralSignatureDefense (Tran et
al. 2018, "Spectral signatures in backdoor attacks") over the penultimate activations. On the real
training data: the fraction each flags per class. On the poisoned copies: precision and recall
against the known poison rows, so the user sees whether the detector works for this model.

ART's defences read the last layer of a Sequential model, which for a classifier is the logits
(and ART extracts PyTorch activations only from nn.Sequential, ART issue 1810), so ART gets the
penultimate activations themselves, through an identity estimator.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Annotated, Callable

import numpy as np
from pydantic import Field

from govssl.checks._art import art_classifier, input_space, is_image, penultimate, seeded
from govssl.checks._binomial import clopper_pearson
from govssl.checks.base import (
    Check, CheckContext, CheckParams, Confidence, Measurement, PositiveInt, Share, register_check,
)

__all__ = ["PoisoningCheck", "backdoor_trigger", "poison_copy", "detect", "DETECTORS"]

DETECTORS = ("activation_clustering", "spectral_signature")


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


def _identity_estimator(width: int, n_classes: int):
    import torch

    return art_classifier(torch.nn.Sequential(torch.nn.Identity()), (width,), n_classes)


def detect(activations: np.ndarray, y: np.ndarray, n_classes: int, *, expected_poison: float,
           seed: int) -> dict[str, np.ndarray]:
    """Per detector, a boolean array: True where ART flags the row as poison."""
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense

    y = np.asarray(y, dtype=np.int64)
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    acts = activations.astype(np.float32)
    estimator = _identity_estimator(acts.shape[1], n_classes)
    out = {}
    with seeded(seed):
        clustering = ActivationDefence(estimator, acts, onehot)
        _, clean = clustering.detect_poison(nb_clusters=2, nb_dims=min(10, acts.shape[1]), reduce="PCA",
                                            cluster_analysis="smaller")
        out["activation_clustering"] = np.asarray(clean) == 0
        # ART projects the uncentred activations on the top singular vector (Tran et al. centre
        # them): centred per class here, ART's score is the paper's.
        centred = acts.copy()
        for c in np.unique(y):
            centred[y == c] -= centred[y == c].mean(axis=0)
        spectral = SpectralSignatureDefense(estimator, centred, onehot, batch_size=1024, eps_multiplier=1.5,
                                            expected_pp_poison=expected_poison)
        _, clean = spectral.detect_poison()
        out["spectral_signature"] = np.asarray(clean) == 0
    return out


@register_check("poisoning")
class PoisoningCheck(Check):
    metrics = ("backdoor_success_rate", "clean_accuracy_drop", "detector_precision", "detector_recall",
               "flagged_fraction")

    class Params(CheckParams):
        rates: list[Share] = Field(default_factory=lambda: [0.01, 0.05], min_length=1)  # shares of the training rows poisoned
        target_label: int = Field(0, ge=0)  # class index the backdoor flips to (checked against the model's classes)
        # tables: names of numeric features; default (null) the first two mutable ones
        trigger_features: list[str] | None = Field(None, min_length=1)
        immutable: list[str] = []
        sensitive_immutable: bool = True
        retrain_pretrain_epochs: int | None = Field(1, ge=0)  # the shorter budget for retraining (null = the plan's)
        retrain_finetune_epochs: PositiveInt | None = None
        expected_poison: Share = 0.05  # SpectralSignatureDefense flags 1.5 x this share of each class
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
        out += exposure(self.name, data.X_train, np.asarray(data.y_train), data.X_test, np.asarray(data.y_test),
                        retrain, trigger, rates=[float(r) for r in p["rates"]], target=target, n_classes=n_classes,
                        seed=ctx.seed, confidence=float(p["confidence"]),
                        expected_poison=float(p["expected_poison"]),
                        details={"trigger": trigger_info, "retrain_budget": budget})
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
                result = fit(plan, copy, Path(folder), ctx.progress or NullProgress())
            return result.model, result.labelled_rows

        return retrain

    def _detection_on_real_data(self, ctx: CheckContext, n_classes: int) -> list[Measurement]:
        rows = np.asarray(ctx.train.labelled_rows)
        rng = np.random.default_rng(ctx.seed + 53)
        cap = int(self.params["max_detection_rows"])
        if len(rows) > cap:
            rows = np.sort(rng.choice(rows, size=cap, replace=False))
        y = np.asarray(ctx.dataset.y_train[rows])
        flags = detect(penultimate(ctx.train.model, ctx.dataset.X_train[rows]), y, n_classes,
                       expected_poison=float(self.params["expected_poison"]), seed=ctx.seed + 59)
        conf = float(self.params["confidence"])
        out = []
        for detector, flagged in flags.items():
            for c in range(n_classes):
                in_class = y == c
                k, n = int(flagged[in_class].sum()), int(in_class.sum())
                low, high = clopper_pearson(k, n, conf)
                out.append(Measurement(self.name, "flagged_fraction", k / n if n else float("nan"),
                                       f"{detector} class={c}", low, high, n,
                                       {"detector": detector, "class": c, "data": "labelled training rows",
                                        "n_rows": len(rows), "expected_poison": float(self.params["expected_poison"]),
                                        "activations": "penultimate layer"}))
        return out


def exposure(check: str, X_train, y_train, X_test, y_test, retrain: Callable, trigger: Callable, *,
             rates: list[float], target: int, n_classes: int, seed: int, confidence: float,
             expected_poison: float, details: dict) -> list[Measurement]:
    """Backdoor exposure and detector quality. ``retrain(X, y) -> (model, labelled rows)``."""
    from govssl.train.models import predict_proba

    others = np.flatnonzero(np.asarray(y_test) != target)
    X_trig = trigger(X_test[others]).astype(np.float32)
    clean_model, _ = retrain(X_train, y_train)
    clean_acc = float(np.mean(predict_proba(clean_model, X_test).argmax(axis=1) == y_test))
    clean_asr = float(np.mean(predict_proba(clean_model, X_trig).argmax(axis=1) == target))
    out = []
    for i, rate in enumerate(rates):
        X_p, y_p, poison = poison_copy(X_train, y_train, trigger, rate, target, seed + 7 * i)
        model, labelled = retrain(X_p, y_p)
        labelled = np.asarray(labelled)
        hits = predict_proba(model, X_trig).argmax(axis=1) == target
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
        acts = penultimate(model, X_p[labelled])
        flags = detect(acts, y_p[labelled], n_classes, expected_poison=expected_poison, seed=seed + 11 * i)
        is_poison = np.isin(labelled, poison)
        for detector, flagged in flags.items():
            tp = int(np.sum(flagged & is_poison))
            precision = tp / int(flagged.sum()) if flagged.any() else float("nan")
            recall = tp / int(is_poison.sum()) if is_poison.any() else float("nan")
            dd = {**d, "detector": detector, "flagged": int(flagged.sum()), "true_positives": tp,
                  "expected_poison": expected_poison}
            out.append(Measurement(check, "detector_precision", float(precision), f"{detector} {subject}",
                                   n=int(flagged.sum()), details=dd))
            out.append(Measurement(check, "detector_recall", float(recall), f"{detector} {subject}",
                                   n=int(is_poison.sum()), details=dd))
    return out
