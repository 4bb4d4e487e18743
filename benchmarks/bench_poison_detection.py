"""Recall and precision of each backdoor detector at the poisoning check's flagging budget.

Runs the poisoning check of a plan (default: the Adult demo, audits/adult-income.yaml) with the
plan's own poisoning settings, and prints, per poison rate, the backdoor's success rate and each
detector's recall and precision on each representation at the budget, with the smallest recall
distinguishable from chance (one-sided binomial, p < 0.05). The context's own model is a short
training of the plan (the check's real-data flags are not the point here); the poisoned and clean
retrains use the plan's recipe with the check's retrain budget, as in an audit.

Run from the repository root:  python benchmarks/bench_poison_detection.py [plan.yaml]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(plan_path: str = "audits/adult-income.yaml") -> None:
    from govssl import data, train
    from govssl.checks.base import CheckContext
    from govssl.checks.poisoning import PoisoningCheck
    from govssl.plan import load_plan
    from govssl.progress import NullProgress

    plan = load_plan(Path(plan_path))
    dataset = data.load(plan)
    t = plan.training
    quick = plan.model_copy(update={"training": t.model_copy(update={
        "pretrain": t.pretrain.model_copy(update={"epochs": 0}),
        "finetune": t.finetune.model_copy(update={"epochs": 1}), "baseline": False,
        "dp": t.dp.model_copy(update={"enabled": False})})})
    with tempfile.TemporaryDirectory() as folder:
        trained = train.fit(quick, dataset, Path(folder), NullProgress())
        ctx = CheckContext(dataset=dataset, train=trained, seed=plan.seed, out_dir=None,
                           progress=NullProgress(), plan=plan)
        params = dict((plan.checks or {}).get("poisoning") or {})
        started = time.perf_counter()
        result = PoisoningCheck(**params).run(ctx)
        seconds = time.perf_counter() - started
    assert result.status == "measured", result.reason
    print(f"plan {plan_path}; poisoning parameters {params}; check took {seconds:.1f} s")
    by_rate: dict[str, list] = {}
    for m in result.measurements:
        if m.metric in ("backdoor_success_rate", "detector_recall", "detector_precision", "best_detector_recall"):
            by_rate.setdefault(m.details.get("rate"), []).append(m)
    for rate, ms in sorted(by_rate.items()):
        success = next(m for m in ms if m.metric == "backdoor_success_rate")
        d = success.details
        print(f"\nrate {rate:g}: backdoor success {success.value:.3f} (clean retrain {d['clean_retrain_success_rate']:.3f}); "
              f"{d['n_poison_labelled']} poisoned of {d['n_labelled']} labelled rows")
        precision = {m.subject: m.value for m in ms if m.metric == "detector_precision"}
        for m in ms:
            if m.metric == "detector_recall":
                power = m.details["power"]
                print(f"  {m.subject:45s} recall {m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]  precision "
                      f"{precision[m.subject]:.3f}  flags {m.details['flagged']} ({m.details['flagged_share']:.3f})  "
                      f"needs >= {power['min_detectable_recall']:.3f} for p<0.05 (p={power['p_value_vs_chance']:.2g})")
        best = next((m for m in ms if m.metric == "best_detector_recall"), None)
        if best is not None:
            print(f"  best: {best.details['detector']} on {best.details['representation']}, recall {best.value:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
