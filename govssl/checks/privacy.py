"""Membership inference: can an attacker tell the rows the model learned from?

Two ART attacks (Shokri et al. 2017, "Membership inference attacks against machine learning
models"): a black-box attack model trained on the target's predictions for known members and
non-members, and the rule-based attack (a row is a member if the model classifies it correctly;
Yeom et al. 2018). Members are the labelled training rows (the rows whose labels the model was
fitted on), non-members the held-out test rows; each side is split in halves, the attack is fitted
on one half and measured on the other.

Reported per attack: ROC AUC (Hanley & McNeil 1982 interval), advantage TPR - FPR of the attack's
decisions (Yeom et al. 2018), and an empirical epsilon lower bound: at a threshold fixed on the
fitting half for a target false-positive rate, epsilon >= log((TPR - delta) / FPR) and
log((1 - FPR - delta) / (1 - TPR)) must hold for any (epsilon, delta)-DP training (Kairouz et
al. 2015; Jagielski et al. 2020, "Auditing differentially private machine learning"); the bound
uses the pessimistic Clopper-Pearson ends of TPR and FPR. When the model was trained under DP,
``empirical_epsilon_excess`` = lower bound - claimed epsilon: above 0 means the claim is broken.
These attacks have little power against a DP claim: at a threshold set for FPR = target_fpr,
the first bound cannot exceed log(1 / target_fpr) (about 3.0 at 0.05), so each bound carries its
``max_detectable`` (the bound when every member is caught at the target FPR) and the policy
treats a threshold beyond it as inconclusive (see govssl/policy/_decide.py).

The DP claim itself is audited with canaries in one extra training run (Steinke, Nasr and
Jagielski 2023; see govssl/checks/_canary.py): ``canary_epsilon_lower_bound`` and
``canary_epsilon_excess`` = that bound - claimed epsilon, for a model trained under DP. That run
is audit evidence only: its model is discarded, and the released weights' guarantee does not
cover it (it trains on the same private rows once more).

Two kinds of canary (``canary_kind``). ``whitebox`` (the default): the paper's white-box setting
with Dirac gradient canaries, each a clipped gradient ``max_grad_norm * e_j`` on its own
coordinate j of the largest weight matrix the fine-tuning phase trains, Poisson-sampled into the
batches like real rows; the auditor sees every privatised gradient and scores canary j by the
sum over steps of coordinate j, less the real rows' known part. It audits the fine-tuning phase
only: its bound lower-bounds that phase's epsilon, which is at most the composed epsilon the
record claims for all private phases, so a bound above the claim still proves the claim broken
(sound), but a broken pretraining phase goes unseen (weaker). ``input``: crafted outlier rows
with random labels in every private phase, scored by the final model's loss (black box; far less
power: with DP noise switched off at a claimed epsilon of 3 it certified about 1.4). When the
fine-tuning phase has fewer weight coordinates than canaries (a linear probe's head: 128), whitebox
uses one canary per coordinate instead, said in the details (``canaries_reduced``); fewer
canaries lower the ceiling (``max_detectable``: 3.26 for 128, 5.27 for 1,000), so a claim past it
is inconclusive. Whitebox falls back to input only without one-pass clipping, with the reason. ``canary_audit_without_dp`` audits a model trained without DP too:
the white-box run is then clipped SGD without noise, and the bound (no claim to compare) shows
how identifiable the canaries are with no noise; it should reach the audit's ceiling.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from govssl.checks import _canary
from govssl.checks._art import art_classifier, seeded
from govssl.checks._binomial import clopper_pearson
from govssl.checks.base import Check, CheckContext, CheckParams, Confidence, Measurement, Share, register_check

__all__ = ["PrivacyCheck", "epsilon_lower_bound", "auc_interval"]

ATTACKS = ("black_box", "rule_based")
CANARY_SCALE = 3.0  # canaries' distance from the data, in standard deviations of each feature


def epsilon_lower_bound(tp: int, n_members: int, fp: int, n_nonmembers: int, delta: float,
                        confidence: float) -> tuple[float, float, float]:
    """(epsilon lower bound, TPR low, FPR high) from one threshold's counts, at ``confidence``
    for both proportions together (Bonferroni: each one-sided at 1 - (1 - confidence) / 2)."""
    # each end of a two-sided interval at ``confidence`` is a one-sided bound at 1 - (1 - c) / 2
    tpr_low, _ = clopper_pearson(tp, n_members, confidence)
    _, fpr_high = clopper_pearson(fp, n_nonmembers, confidence)
    bounds = [0.0]
    if fpr_high > 0 and tpr_low - delta > 0:
        bounds.append(math.log((tpr_low - delta) / fpr_high))
    if 1 - tpr_low > 0 and 1 - fpr_high - delta > 0:
        bounds.append(math.log((1 - fpr_high - delta) / (1 - tpr_low)))
    return max(bounds), tpr_low, fpr_high


def auc_interval(auc: float, n_pos: int, n_neg: int, confidence: float) -> tuple[float, float]:
    """Normal interval with the Hanley & McNeil (1982, Radiology 143(1)) standard error."""
    from scipy.stats import norm

    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    z = float(norm.ppf(0.5 + confidence / 2))
    se = math.sqrt(max(var, 0.0))
    return max(0.0, auc - z * se), min(1.0, auc + z * se)


@register_check("privacy")
class PrivacyCheck(Check):
    metrics = ("membership_auc", "membership_advantage", "empirical_epsilon_lower_bound",
               "empirical_epsilon_excess", "canary_epsilon_lower_bound", "canary_epsilon_excess")

    class Params(CheckParams):
        attacks: list[Literal["black_box", "rule_based"]] = Field(
            default_factory=lambda: ["black_box", "rule_based"], min_length=1)
        # ART's attack_model_type for the black-box attack
        attack_model: Literal["rf", "gb", "lr", "dt", "knn", "svm", "nn"] = "rf"
        # members; as many non-members. Each side is split in halves (fit / measure): at least 2.
        max_rows: int = Field(4000, ge=2)
        target_fpr: Share = 0.05
        confidence: Confidence = 0.95
        # canary DP audit (models trained under DP): m canaries, each in the extra run with prob. 1/2
        canary_audit: bool = True
        canary_kind: Literal["whitebox", "input"] = "whitebox"
        # also run the canary audit for a model trained without DP (no claim: the bound only)
        canary_audit_without_dp: bool = False
        canaries: int = Field(1000, ge=2, le=100_000)
        # guesses per side (k) tried, as shares of the canaries; the bound is Bonferroni-corrected
        # over them. k = share * canaries, rounded, at least 1 and at most canaries / 2.
        canary_guess_shares: list[Annotated[float, Field(gt=0, le=0.5)]] = Field(
            default_factory=lambda: [0.01, 0.02, 0.05, 0.1, 0.2, 0.5], min_length=1, max_length=20)

    def measure(self, ctx: CheckContext) -> list[Measurement]:
        from sklearn.metrics import roc_auc_score

        p = self.params
        data, trained = ctx.dataset, ctx.train
        rng = np.random.default_rng(ctx.seed + 31)
        members = np.asarray(trained.labelled_rows)
        n = min(int(p["max_rows"]), len(members), len(data.y_test))
        members = rng.choice(members, size=n, replace=False)
        nonmembers = rng.choice(len(data.y_test), size=n, replace=False)
        half = n // 2
        x_in, y_in = data.X_train[members].astype(np.float32), np.asarray(data.y_train[members])
        x_out, y_out = data.X_test[nonmembers].astype(np.float32), np.asarray(data.y_test[nonmembers])
        n_classes = int(trained.model[-1].out_features)
        classifier = art_classifier(trained.model, x_in.shape[1:], n_classes)
        dp = trained.record.dp
        delta = float(dp["delta"]) if dp else 0.0
        claimed = float(dp["epsilon"]) if dp else None
        conf, target_fpr = float(p["confidence"]), float(p["target_fpr"])
        common = {"n_members": n - half, "n_nonmembers": n - half, "n_fit": half, "members": "labelled training rows",
                  "nonmembers": "test rows", "sample_seed": ctx.seed + 31, "target_fpr": target_fpr,
                  "confidence": conf, "delta": delta, "claimed_epsilon": claimed,
                  "dp_scope": trained.record.dp_scope, "end_to_end_dp": trained.record.end_to_end_dp}

        out = []
        for attack in p["attacks"]:
            with seeded(ctx.seed + 37):
                fit_in, fit_out, eval_in, eval_out = self._scores(
                    attack, classifier, x_in, y_in, x_out, y_out, half)
            details = {**common, "attack": attack}
            if attack == "black_box":
                details["attack_model"] = p["attack_model"]
            labels = np.r_[np.ones(len(eval_in)), np.zeros(len(eval_out))]
            scores = np.r_[eval_in, eval_out]
            auc = float(roc_auc_score(labels, scores)) if len(np.unique(scores)) > 1 else 0.5
            low, high = auc_interval(auc, len(eval_in), len(eval_out), conf)
            out.append(Measurement(self.name, "membership_auc", auc, attack, low, high, len(labels), details))

            tpr, fpr = float(np.mean(eval_in >= 0.5)), float(np.mean(eval_out >= 0.5))
            se = math.sqrt(tpr * (1 - tpr) / len(eval_in) + fpr * (1 - fpr) / len(eval_out))
            from scipy.stats import norm

            z = float(norm.ppf(0.5 + conf / 2))
            out.append(Measurement(self.name, "membership_advantage", tpr - fpr, attack, tpr - fpr - z * se,
                                   tpr - fpr + z * se, len(labels), {**details, "tpr": tpr, "fpr": fpr,
                                   "decision": "attack's own member decision (score >= 0.5)"}))

            # threshold fixed on the fitting half: the smallest one whose FPR there is <= target
            threshold = float(np.quantile(fit_out, 1 - target_fpr, method="higher")) + 1e-12
            if not np.isfinite(threshold) or np.mean(fit_out >= threshold) > target_fpr:
                threshold = np.inf
            tp, fp = int(np.sum(eval_in >= threshold)), int(np.sum(eval_out >= threshold))
            eps_low, tpr_low, fpr_high = epsilon_lower_bound(tp, len(eval_in), fp, len(eval_out), delta, conf)
            # power: the bound when every member is caught at the target FPR
            ceiling = epsilon_lower_bound(len(eval_in), len(eval_in), int(math.ceil(target_fpr * len(eval_out))),
                                          len(eval_out), delta, conf)[0]
            bound_details = {**details, "threshold": threshold, "tp": tp, "fp": fp, "tpr_low": tpr_low,
                             "fpr_high": fpr_high, "interval": "clopper-pearson", "max_detectable": ceiling,
                             "power_note": "a membership attack at FPR = target_fpr certifies at most about "
                                           "log(1 / target_fpr); the canary audit (canary_epsilon_*) gates a DP claim"}
            out.append(Measurement(self.name, "empirical_epsilon_lower_bound", eps_low, attack, n=len(labels),
                                   details=bound_details))
            if claimed is not None:
                out.append(Measurement(self.name, "empirical_epsilon_excess", eps_low - claimed, attack,
                                       n=len(labels), details={**bound_details,
                                                               "max_detectable": ceiling - claimed}))
        audit = p["canary_audit"] and (claimed is not None or p["canary_audit_without_dp"])
        if audit and ctx.plan is not None:
            out += self._canary_audit(ctx, claimed, delta if claimed is not None else float(ctx.plan.training.dp.delta),
                                      conf)
        return out

    def _canary_audit(self, ctx: CheckContext, claimed: float | None, delta: float, conf: float) -> list[Measurement]:
        """The DP claim against canaries in one extra training run (see govssl/checks/_canary.py)."""
        p = self.params
        m = int(p["canaries"])
        kind, fallback, reduced = p["canary_kind"], None, None
        if kind == "whitebox":
            from govssl.train._clip import OnePassClipper

            room, where = _canary.gradient_canary_room(ctx)
            unsupported = OnePassClipper.unsupported(ctx.train.model)
            if unsupported is not None:
                kind, fallback = "input", f"white-box canaries need one-pass clipping: {unsupported}"
            elif room < m:
                # fewer white-box canaries, not weaker ones: the bound's ceiling (max_detectable) falls
                # with m, so a claim beyond what they can certify makes the rule inconclusive, while input
                # canaries state the same ceiling and measured far below it (1.44 with the noise off)
                reduced = (f"{m} canaries asked for, but {where} the fine-tuning phase trains has {room} "
                           f"coordinates: {room} white-box canaries, one a coordinate")
                m = room
        ks = sorted({min(m // 2, max(1, round(share * m))) for share in p["canary_guess_shares"]})
        included = np.random.default_rng(ctx.seed + 43).random(m) < 0.5
        started = time.perf_counter()
        if kind == "whitebox":
            run, canaries, reused = _canary.train_with_gradient_canaries(ctx, included, ctx.seed + 41)
            scores = _canary.gradient_scores(canaries)
            described = {
                "canary_kind": "whitebox",
                "canary": f"Dirac gradient canaries: clipped gradient max_grad_norm x e_j, j one of {m} distinct "
                          f"coordinates of {canaries.parameter} {list(canaries.shape)} (drawn from the seed)",
                "score": "sum over steps of the privatised (noised, averaged) gradient at the canary's coordinate, "
                         "times the averaging batch size, less the real rows' clipped sum there",
                "training": "plan's recipe, DP setting and rows; the included canaries are extra private rows of the "
                            "fine-tuning phase, Poisson-sampled like the real rows; audit evidence, model discarded"
                            + ("" if claimed is not None else "; no DP: clipped SGD without noise, so the bound "
                               "shows how identifiable the canaries are with no noise"),
                "audited_phase": "finetune",
                "pretraining": ("the released model's pretrained encoder, not run again (its private steps open the "
                                "audit run's accountant history)" if reused
                                else "run again with the plan's recipe" if ctx.plan.training.pretrain.method != "none"
                                else "none"),
                "scope_note": "the bound is for the fine-tuning phase; that phase's epsilon is at most the composed "
                              "epsilon claimed for every private phase, so a bound above the claim proves the claim "
                              "broken, but a broken pretraining phase is not seen",
                "steps": len(canaries.privatised), "expected_batch_size": canaries.expected_batch_size,
                **({"canaries_reduced": reduced} if reduced else {}),
            }
        else:
            n_classes = int(ctx.train.model[-1].out_features)
            X_c, y_c = _canary.crafted_canaries(ctx.dataset.X_train, n_classes, m, CANARY_SCALE, ctx.seed + 41)
            run = _canary.train_with_canaries(ctx, X_c, y_c, included)
            scores = _canary.label_log_likelihood(run.model, X_c, y_c)
            described = {
                "canary_kind": "input",
                "canary": f"crafted outliers (N(0, {CANARY_SCALE:g}^2) x each feature's spread around the mean), "
                          "labels drawn uniformly",
                "score": "log-likelihood of the canary's label under the audit run's model (higher = guessed in)",
                "training": "plan's recipe and DP setting on the released model's labelled rows plus the "
                            "included canaries, every row labelled; audit evidence, model discarded",
                "audited_phase": "every private phase",
            }
            if fallback:
                described["canary_kind_fallback"] = fallback
        found = _canary.audit_scores(scores, included, ks, delta, conf)
        run_dp = run.record.dp or {}
        details = {
            "canaries": m, "canaries_included": int(included.sum()), "k": found["k"], "guesses": found["guesses"],
            "correct": found["correct"], "confidence": conf, "delta": delta, "claimed_epsilon": claimed,
            "audit_run_epsilon": run_dp.get("epsilon") if claimed is not None else None,
            "k_grid": [row["k"] for row in found["grid"]],
            "level_per_k": found["level_per_k"], "per_k": found["grid"],
            "bound": "Steinke, Nasr & Jagielski 2023, Theorem 3 ((epsilon, delta)-DP), Bonferroni over k",
            **described,
            "seed": ctx.seed + 41, "inclusion_seed": ctx.seed + 43,
            "audit_seconds": round(time.perf_counter() - started, 3),
            "power_note": f"more canaries (checks.privacy.canaries, now {m}) raise the largest epsilon the "
                          "audit can certify",
        }
        eps_hat, ceiling = found["epsilon"], found["max_detectable"]
        out = [Measurement(self.name, "canary_epsilon_lower_bound", eps_hat, n=m,
                           details={**details, "max_detectable": ceiling})]
        if claimed is not None:
            out.append(Measurement(self.name, "canary_epsilon_excess", eps_hat - claimed, n=m,
                                   details={**details, "max_detectable": ceiling - claimed}))
        return out

    def _scores(self, attack, classifier, x_in, y_in, x_out, y_out, half):
        """Member scores (higher = member) for the fitting and the evaluation halves."""
        if attack == "rule_based":
            from art.attacks.inference.membership_inference import MembershipInferenceBlackBoxRuleBased

            mia = MembershipInferenceBlackBoxRuleBased(classifier)
            score = lambda x, y: mia.infer(x, y).astype(np.float64).ravel()  # noqa: E731
        else:
            from art.attacks.inference.membership_inference import MembershipInferenceBlackBox

            mia = MembershipInferenceBlackBox(classifier, input_type="prediction",
                                              attack_model_type=str(self.params["attack_model"]))
            mia.fit(x_in[:half], y_in[:half], x_out[:half], y_out[:half])
            score = lambda x, y: mia.infer(x, y, probabilities=True).astype(np.float64).reshape(len(x), -1)[:, -1]  # noqa: E731
        return (score(x_in[:half], y_in[:half]), score(x_out[:half], y_out[:half]),
                score(x_in[half:], y_in[half:]), score(x_out[half:], y_out[half:]))
