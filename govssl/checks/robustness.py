"""Adversarial robustness: accuracy of the model under FGSM and PGD, per eps and per group.

FGSM (Goodfellow et al. 2015, "Explaining and harnessing adversarial examples") and PGD with
random restarts (Madry et al. 2018, "Towards deep learning models resistant to adversarial
attacks") from ART, L-infinity, untargeted against the true label. Every attack parameter is
set from the plan: ART's PGD defaults (eps 0.3, step 0.1, 100 steps, no random start) are not
Madry et al.'s. The step size is ``pgd_rel_step_size * eps``; with 10 steps and 0.25 the path is
2.5 eps long, Madry et al.'s choice.

Tables are attacked in the model's input space (standardised numeric columns, one-hot blocks):
only numeric features the plan does not mark immutable move, clipped to the training range;
sensitive attributes are immutable by default. Images are clipped to [0, 1]. Robust accuracy
gets an exact binomial interval; per sensitive group too, since a robustness gap between groups
is a fairness finding.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from govssl.checks._art import art_classifier, input_space, is_image, line_chart_svg, seeded
from govssl.checks._binomial import clopper_pearson
from govssl.checks.base import Check, CheckContext, CheckParams, Confidence, Measurement, PositiveInt, register_check
from govssl.checks.fairness import group_labels

__all__ = ["RobustnessCheck", "attack_inputs"]

ATTACKS = ("fgsm", "pgd")


def attack_inputs(classifier, X: np.ndarray, y: np.ndarray, attack: str, eps: float, *, mask: np.ndarray,
                  steps: int, rel_step_size: float, random_restarts: int, batch_size: int, seed: int) -> np.ndarray:
    """Adversarial versions of ``X`` from ART (L-infinity, untargeted, against the labels ``y``)."""
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    if attack == "fgsm":
        art_attack = FastGradientMethod(classifier, norm=np.inf, eps=eps, eps_step=eps, targeted=False,
                                        num_random_init=0, batch_size=batch_size, minimal=False)
    elif attack == "pgd":
        art_attack = ProjectedGradientDescent(
            classifier, norm=np.inf, eps=eps, eps_step=rel_step_size * eps, max_iter=steps, targeted=False,
            num_random_init=random_restarts, batch_size=batch_size, random_eps=False, verbose=False,
        )
    else:
        raise ValueError(f"unknown attack '{attack}'; choose from {', '.join(ATTACKS)}")
    mask = np.broadcast_to(mask, X.shape).astype(np.float32)
    with seeded(seed):
        return art_attack.generate(X.astype(np.float32), y=np.asarray(y, dtype=np.int64), mask=mask)


@register_check("robustness")
class RobustnessCheck(Check):
    metrics = ("clean_accuracy", "robust_accuracy", "group_robust_accuracy", "robust_accuracy_gap",
               "immutable_features_changed")

    class Params(CheckParams):
        attacks: list[Literal["fgsm", "pgd"]] = Field(default_factory=lambda: ["fgsm", "pgd"], min_length=1)
        # L-infinity budgets in the model's input space (standard deviations / pixel intensity)
        eps: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [0.05, 0.1, 0.25], min_length=1)
        pgd_steps: PositiveInt = 10
        pgd_rel_step_size: float = Field(0.25, gt=0)  # PGD step = this * eps
        pgd_random_restarts: int = Field(1, ge=0)  # random starts inside the eps-ball (0: start at the input)
        max_rows: PositiveInt = 2000  # test rows attacked (a seeded sample)
        batch_size: PositiveInt = 512
        confidence: Confidence = 0.95
        immutable: list[str] = []  # features the attacker may not move
        sensitive_immutable: bool = True
        min_group_size: int = Field(30, ge=0)  # smaller groups are left out of the robust-accuracy gap; 0: none

    def measure(self, ctx: CheckContext) -> list[Measurement]:
        p = self.params
        data = ctx.dataset
        space = input_space(data, list(p["immutable"]), bool(p["sensitive_immutable"]))
        rng = np.random.default_rng(ctx.seed + 17)
        n_all = len(data.y_test)
        rows = np.sort(rng.choice(n_all, size=min(int(p["max_rows"]), n_all), replace=False))
        X, y = data.X_test[rows].astype(np.float32), np.asarray(data.y_test[rows])
        n_classes = int(ctx.train.model[-1].out_features)
        classifier = art_classifier(ctx.train.model, X.shape[1:], n_classes, (space.clip_min, space.clip_max))
        conf = float(p["confidence"])
        groups = self._groups(ctx, rows)
        common = {"norm": "inf", "n_rows": len(rows), "n_test_rows": n_all, "sample_seed": ctx.seed + 17,
                  "mutable_features": list(space.mutable), "immutable_features": list(space.immutable),
                  "input_space": "pixels in [0, 1]" if is_image(X) else
                  "encoded features; numeric clipped to the training range; one-hot blocks fixed"}

        correct = ctx.train.predict_proba(X).argmax(axis=1) == y
        out = [self._accuracy("clean_accuracy", "", correct, conf, common)]
        curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
        frozen = space.mask == 0
        for attack in p["attacks"]:
            curves[attack.upper()] = self._curve_points({}, 0.0, correct, groups)
            for i, eps in enumerate(p["eps"]):
                eps = float(eps)
                details = {**common, "attack": attack, "eps": eps}
                if attack == "pgd":
                    details.update(steps=int(p["pgd_steps"]), step_size=float(p["pgd_rel_step_size"]) * eps,
                                   random_restarts=int(p["pgd_random_restarts"]))
                X_adv = attack_inputs(classifier, X, y, attack, eps, mask=space.mask, steps=int(p["pgd_steps"]),
                                      rel_step_size=float(p["pgd_rel_step_size"]),
                                      random_restarts=int(p["pgd_random_restarts"]),
                                      batch_size=int(p["batch_size"]), seed=ctx.seed + 101 * i)
                subject = f"{attack} eps={eps:g}"
                changed = int(np.any((X_adv != X)[:, frozen], axis=0).sum()) if frozen.any() else 0
                out.append(Measurement(self.name, "immutable_features_changed", float(changed), subject,
                                       n=len(rows), details=details))
                adv_correct = ctx.train.predict_proba(X_adv).argmax(axis=1) == y
                out.append(self._accuracy("robust_accuracy", subject, adv_correct, conf, details))
                self._curve_points(curves[attack.upper()], eps, adv_correct, groups)
                out += self._per_group(subject, groups, adv_correct, conf, details)
        if ctx.out_dir is not None:
            svg = line_chart_svg("Accuracy under attack, all test rows and per group",
                                 "eps (L-inf, model input space)", "accuracy", curves)
            (ctx.out_dir / "robustness.svg").write_text(svg, encoding="utf-8")
        return out

    @staticmethod
    def _curve_points(curves, eps, correct, groups) -> dict[str, list[tuple[float, float]]]:
        """Add the chart's points at ``eps``: accuracy over all attacked rows and per group
        (labelled with the group's size, since a small group's line is noisy)."""
        curves.setdefault("all test rows", []).append((eps, float(correct.mean())))
        for _, labels, values in groups:
            for label in sorted(values):
                member = labels == label
                curves.setdefault(f"{label} (n={int(member.sum())})", []).append(
                    (eps, float(correct[member].mean())))
        return curves

    def _groups(self, ctx, rows) -> list[tuple[str, np.ndarray, dict]]:
        data = ctx.dataset
        if not getattr(data, "sensitive", ()):
            return []
        frame = data.sensitive_frame("test").iloc[rows].reset_index(drop=True)
        out = []
        for col in data.sensitive:
            subject, labels = group_labels(frame, [col])
            out.append((subject, labels, {label: {col: label.split("=", 1)[1]} for label in set(labels)}))
        return out

    def _per_group(self, subject, groups, correct, conf, details) -> list[Measurement]:
        min_size = int(self.params["min_group_size"])
        out = []
        for attribute, labels, values in groups:
            accuracies = {}
            for label in sorted(values):
                member = labels == label
                d = {**details, "attribute": attribute, "group": values[label]}
                m = self._accuracy("group_robust_accuracy", f"{subject} {label}", correct[member], conf, d)
                out.append(m)
                if m.n >= min_size:
                    accuracies[label] = m.value
            gap = max(accuracies.values()) - min(accuracies.values()) if len(accuracies) >= 2 else float("nan")
            out.append(Measurement(self.name, "robust_accuracy_gap", float(gap), f"{subject} {attribute}",
                                   n=int(len(labels)), details={**details, "attribute": attribute,
                                   "groups": sorted(accuracies), "min_group_size": min_size}))
        return out

    def _accuracy(self, metric, subject, correct, conf, details) -> Measurement:
        k, n = int(correct.sum()), int(len(correct))
        low, high = clopper_pearson(k, n, conf)
        value = k / n if n else float("nan")
        return Measurement(self.name, metric, float(value), subject, low, high, n,
                           {**details, "confidence": conf, "interval": "clopper-pearson"})
