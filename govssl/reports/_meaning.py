"""Plain-language words for the documents' readers: what each known metric measures, and which
end of a figure's interval a rule was judged on. Keyed by metric name; a metric name that two
checks share in different senses is keyed ``check.metric`` as well."""

from __future__ import annotations

__all__ = ["METRIC_MEANINGS", "metric_meaning", "BOUND_WORDS"]

METRIC_MEANINGS: dict[str, str] = {
    # performance
    "accuracy": "The share of test rows the model classifies correctly.",
    "balanced_accuracy": "The average, over the classes, of the share of each class classified correctly; "
                         "a rare class counts as much as a common one.",
    "f1": "The balance (harmonic mean) of precision and recall for the positive class.",
    "roc_auc": "How well the model's scores rank positive rows above negative ones: 0.5 is chance, 1 is perfect.",
    "expected_calibration_error": "How far the model's predicted probabilities are, on average, from the "
                                  "rates actually observed (0 is perfectly calibrated).",
    # fairness
    "equalized_odds_difference": "The largest difference between groups in how often the model is right about "
                                 "people who are positive (true-positive rate) or wrong about people who are "
                                 "negative (false-positive rate); 0 means every group is treated alike.",
    "demographic_parity_difference": "The largest difference between groups in the share of people the model "
                                     "selects (predicts positive).",
    "demographic_parity_ratio": "The selection rate of the least-selected group divided by that of the "
                                "most-selected group; 1 means equal rates.",
    "groups_insufficient_data": "How many groups have too few test rows to be included in the fairness gaps.",
    "selection_rate": "The share of a group that the model predicts positive.",
    "true_positive_rate": "The share of a group's positive rows that the model predicts positive.",
    "false_positive_rate": "The share of a group's negative rows that the model wrongly predicts positive.",
    "fairness.accuracy": "The share of a group's test rows classified correctly.",
    # robustness
    "clean_accuracy": "Accuracy on the attacked sample before any attack.",
    "robust_accuracy": "The share of test rows still classified correctly under every adversarial attack run "
                       "(FGSM, PGD, APGD) that moves their inputs within the stated strength (eps): the worst case.",
    "attack_robust_accuracy": "The share of test rows still classified correctly under one adversarial attack.",
    "half_accuracy_eps": "The attack strength (eps) at which worst-case accuracy falls to half the clean accuracy.",
    "group_robust_accuracy": "Accuracy under attack within one group.",
    "robust_accuracy_gap": "The difference between the groups with the highest and the lowest accuracy under attack.",
    "immutable_features_changed": "How many features that the attack must not change were changed anyway.",
    # poisoning
    "backdoor_success_rate": "After planting a backdoor in part of the training rows and retraining, the share of "
                             "triggered test rows the model sends to the attacker's label.",
    "clean_accuracy_drop": "How much accuracy on untouched test rows fell after poisoning.",
    "detector_precision": "Of the training rows the backdoor detector flagged, the share that were really poisoned.",
    "detector_recall": "Of the poisoned training rows, the share the backdoor detector found.",
    "best_detector_recall": "The recall of the best backdoor detector at the fixed flagging budget.",
    "best_detector_precision": "The precision of the detector with the best recall at the fixed flagging budget.",
    "flagged_fraction": "The share of the real training rows the backdoor detector flags.",
    # privacy
    "membership_auc": "How well an attacker can tell training rows from held-out rows by the model's outputs "
                      "(0.5 is guessing).",
    "membership_advantage": "An attacker's true-positive rate minus false-positive rate at telling training rows "
                            "from held-out rows (0 is no advantage).",
    "empirical_epsilon_lower_bound": "A lower bound on the model's differential-privacy epsilon, measured by attack.",
    "empirical_epsilon_excess": "How far the measured lower bound on epsilon exceeds the claimed epsilon "
                                "(above 0 means the privacy claim does not hold).",
    "canary_epsilon_lower_bound": "Lower bound on epsilon from canaries in one extra training run (Steinke, "
                                  "Nasr and Jagielski 2023): how many canaries' membership the model gave away.",
    "canary_epsilon_excess": "How far the canary audit's lower bound on epsilon exceeds the claimed epsilon "
                             "(above 0 means the privacy claim does not hold).",
    # provenance
    "manifest_verified": "Whether the data came with a manifest whose file hashes the audit verified.",
    "signature_valid": "Whether the data manifest carries a valid signature.",
    "signer_trusted": "Whether the manifest was signed by a key the plan or policy trusts.",
    "license_allowed": "Whether the data's licence is one the policy accepts.",
    "source_declared": "Whether the data's origin is stated.",
    # data quality
    "missing_fraction": "The share of a column's values that are missing.",
    "duplicate_row_fraction": "The share of rows that repeat another row.",
    "train_test_overlap_fraction": "The share of test rows identical to a training row (leakage inflates the scores).",
    "minority_class_fraction": "The share of rows in the rarest class.",
    "min_group_size": "The number of test rows in the smallest group of a sensitive feature.",
    "constant_columns": "How many columns hold a single value.",
    "undeclared_pii_columns": "How many columns look like personal identifiers (names, e-mails, phone numbers, "
                              "dates of birth, national ids) without being declared.",
    # label efficiency
    "ssl_accuracy": "Accuracy of the self-supervised model trained with the plan's label budget.",
    "supervised_accuracy": "Accuracy of a supervised-only model trained on the same labelled rows.",
    "accuracy_gain": "How much more accurate the self-supervised model is than the supervised-only one.",
}

#: how each ``use:`` of a rule reads in a sentence
BOUND_WORDS = {
    "estimate": "the measured value",
    "ci_low": "the low end of the confidence interval (the pessimistic reading of a minimum)",
    "ci_high": "the high end of the confidence interval (the pessimistic reading of a maximum)",
}


def metric_meaning(check: str, metric: str) -> str:
    """What ``metric`` of ``check`` measures, in a sentence; "" for a metric govssl does not know."""
    return METRIC_MEANINGS.get(f"{check}.{metric}") or METRIC_MEANINGS.get(metric, "")
