"""What the poisoning check costs in an audit, with its retrains on every row and on the capped sample.

For the demo plan (audits/adult-income.yaml, 32,561 training rows) and for a resampled Adult table
(``--rows``, default 1,000,000 training rows drawn with replacement from the shipped Adult
training rows, seed 0, plus the official 16,281 test rows; written to a temporary folder and
removed after), measures in one process:

- after: the whole audit with the check's default cap (``max_retrain_rows``, see
  docs/poisoning.md): the audit's seconds (load to store), the training's, the poisoning check's
  and its share of the audit;
- before: the poisoning check alone with ``max_retrain_rows: null`` (the retrains read every
  training row, as before the cap), on the same data with the plan's retrain recipe. The retrains
  do not read the audited model, so the context's own model is a short training (as in
  bench_poison_detection.py). Its audit is the audit above with this check's time in place of
  the capped one's: nothing else in an audit reads the cap.

For each it prints the backdoor's success rate per rate (with the clean retrain's), the
clean-accuracy drop, the best detector's recall with its interval, the smallest recall that beats
chance at the budget, and the number of labelled poison rows behind it; then the ratios after /
before. Where the cap does not bind (the demo), the two give the same figures.

``--caps 10000,300000`` adds more caps to the check-alone runs (same context).

Times are wall-clock seconds and process (CPU) seconds; on a busy machine the CPU seconds are the
steadier figure (training runs on one thread). Run from the repository root:

    python benchmarks/bench_poison_cost.py [--rows 1000000] [--skip-demo] [--caps 10000,300000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _resampled_plan(rows: int, folder: Path) -> Path:
    """The demo plan on ``rows`` training rows resampled from Adult's (seed 0), as CSV files."""
    from govssl.data._builtin import load_builtin

    _, train, test, _ = load_builtin("adult")
    train.sample(rows, replace=True, random_state=0).to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    plan = yaml.safe_load((REPO / "audits" / "adult-income.yaml").read_text(encoding="utf-8"))
    plan["name"] = f"adult-resampled-{rows}"
    plan["dataset"] = {"path": str(folder / "train.csv"), "test_path": str(folder / "test.csv"),
                       "target": "income", "positive_label": ">50K", "sensitive": ["sex", "race"],
                       "drop": ["fnlwgt"]}
    plan["policy"] = str(REPO / "policies" / "default.yaml")
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    return path


def _with_cap(plan, cap):
    from govssl.checks.poisoning import PoisoningCheck

    checks = dict(plan.checks)
    params = dict(checks.get("poisoning") or {})
    params["max_retrain_rows"] = cap
    PoisoningCheck.validate_params(params)
    checks["poisoning"] = params
    return plan.model_copy(update={"checks": checks})


def _figures(result) -> dict:
    """Per rate: success, clean success, accuracy drop, best recall (interval, detector, power)."""
    out = {}
    for m in result.measurements:
        rate = m.details.get("rate")
        if rate is None:
            continue
        row = out.setdefault(rate, {})
        if m.metric == "backdoor_success_rate":
            row.update(success=m.value, clean_success=m.details["clean_retrain_success_rate"],
                       n_poison_labelled=m.details["n_poison_labelled"], n_labelled=m.details["n_labelled"],
                       n_retrain_rows=m.details["retrain_rows"]["n_retrain_rows"])
        elif m.metric == "clean_accuracy_drop":
            row["accuracy_drop"] = m.value
        elif m.metric == "best_detector_recall":
            row.update(recall=m.value, recall_ci=(m.ci_low, m.ci_high),
                       detector=f"{m.details['detector']} {m.details['representation']}",
                       min_detectable=m.details["power"]["min_detectable_recall"])
    return out


def _print_figures(figures: dict) -> None:
    for rate, f in sorted(figures.items()):
        print(f"    rate {rate:g}: backdoor success {f['success']:.3f} (clean retrain {f['clean_success']:.3f}), "
              f"accuracy drop {f['accuracy_drop']:+.3f}; best recall {f['recall']:.3f} "
              f"[{f['recall_ci'][0]:.3f}, {f['recall_ci'][1]:.3f}] ({f['detector']}), beats chance from "
              f"{f['min_detectable']:.3f}; {f['n_poison_labelled']} poison of {f['n_labelled']} labelled rows, "
              f"{f['n_retrain_rows']:,} retrain rows")


class _CheckClock:
    """A progress sink that keeps the process (CPU) seconds of each check of an audit, read where
    the audit advances its "running checks" task; it reports nothing."""

    def __init__(self):
        self.cpu: dict[str, float] = {}
        self._last = 0.0

    @contextmanager
    def task(self, description: str, total):
        clock = self

        class _Task:
            def advance(self, steps: int = 1, **info) -> None:
                if description == "running checks":
                    now = time.process_time()
                    clock.cpu[str(info.get("check"))] = now - clock._last
                    clock._last = now

        if description == "running checks":  # the checks' own tasks (retrains) leave the clock alone
            self._last = time.process_time()
        yield _Task()

    def note(self, message: str) -> None:
        pass


def _audit(plan, folder: Path) -> dict:
    from govssl import run_audit

    clock = _CheckClock()
    started, cpu = time.perf_counter(), time.process_time()
    run = run_audit(plan, db_url=f"sqlite:///{folder / 'audit.db'}", out_root=folder / "out", progress=clock)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    poisoning = next(r for r in run.results if r.check == "poisoning")
    assert poisoning.status == "measured", poisoning.reason
    return {"audit": seconds, "audit_cpu": cpu, "training": float(run.training.seconds), "poisoning": poisoning.seconds,
            "poisoning_cpu": clock.cpu["poisoning"], "figures": _figures(poisoning)}


def _check_alone(plan, caps: list) -> dict:
    """The poisoning check at each cap, on ``plan``'s data with a short training as context."""
    from govssl import data, train
    from govssl.checks.base import CheckContext
    from govssl.checks.poisoning import PoisoningCheck
    from govssl.progress import NullProgress

    dataset = data.load(plan)
    t = plan.training
    quick = plan.model_copy(update={"training": t.model_copy(update={
        "pretrain": t.pretrain.model_copy(update={"epochs": 0}),
        "finetune": t.finetune.model_copy(update={"epochs": 1}), "baseline": False,
        "dp": t.dp.model_copy(update={"enabled": False})})})
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        trained = train.fit(quick, dataset, Path(folder), NullProgress())
        ctx = CheckContext(dataset=dataset, train=trained, seed=plan.seed, out_dir=None,
                           progress=NullProgress(), plan=plan)
        params = dict(plan.checks.get("poisoning") or {})
        for cap in caps:
            cpu = time.process_time()
            result = PoisoningCheck(**{**params, "max_retrain_rows": cap}).run(ctx)
            cpu = time.process_time() - cpu
            assert result.status == "measured", result.reason
            out[cap] = {"poisoning": result.seconds, "poisoning_cpu": cpu, "figures": _figures(result)}
    return out


def _cap_text(cap) -> str:
    return "null" if cap is None else f"{cap:,}"


def compare(name: str, plan, folder: Path, extra_caps: list) -> None:
    from govssl.checks.poisoning import MAX_RETRAIN_ROWS

    print(f"\n== {name}", flush=True)
    a = _audit(_with_cap(plan, MAX_RETRAIN_ROWS), folder)
    rest, rest_cpu = a["audit"] - a["poisoning"], a["audit_cpu"] - a["poisoning_cpu"]
    print(f"  after (max_retrain_rows: {MAX_RETRAIN_ROWS:,}), whole audit: {a['audit']:.1f} s "
          f"({a['audit_cpu']:.1f} CPU s), training {a['training']:.1f} s, poisoning check {a['poisoning']:.1f} s "
          f"({a['poisoning_cpu']:.1f} CPU s) = {100 * a['poisoning'] / a['audit']:.1f}% of the audit "
          f"({100 * a['poisoning_cpu'] / a['audit_cpu']:.1f}% of its CPU time)", flush=True)
    _print_figures(a["figures"])
    alone = _check_alone(plan, [None] + [c for c in extra_caps if c != MAX_RETRAIN_ROWS])
    b = alone.pop(None)
    before, before_cpu = rest + b["poisoning"], rest_cpu + b["poisoning_cpu"]
    print(f"  before (max_retrain_rows: null), check alone: {b['poisoning']:.1f} s ({b['poisoning_cpu']:.1f} CPU s); "
          f"in the audit: {before:.1f} s, {100 * b['poisoning'] / before:.1f}% of it "
          f"({100 * b['poisoning_cpu'] / before_cpu:.1f}% of its CPU time)", flush=True)
    _print_figures(b["figures"])
    print(f"  after / before: poisoning check {a['poisoning'] / b['poisoning']:.3f} "
          f"(CPU {a['poisoning_cpu'] / b['poisoning_cpu']:.3f}), audit {a['audit'] / before:.3f} "
          f"(CPU {a['audit_cpu'] / before_cpu:.3f}); share {100 * b['poisoning'] / before:.1f}% -> "
          f"{100 * a['poisoning'] / a['audit']:.1f}% (CPU {100 * b['poisoning_cpu'] / before_cpu:.1f}% -> "
          f"{100 * a['poisoning_cpu'] / a['audit_cpu']:.1f}%)", flush=True)
    same = all(a["figures"][r][k] == b["figures"][r][k] for r in b["figures"]
               for k in ("success", "accuracy_drop", "recall"))
    print(f"  figures identical before and after: {same}")
    for cap, r in alone.items():
        print(f"  max_retrain_rows {_cap_text(cap)}, check alone: {r['poisoning']:.1f} s ({r['poisoning_cpu']:.1f} CPU s); "
              f"in the audit {100 * r['poisoning_cpu'] / (rest_cpu + r['poisoning_cpu']):.1f}% of its CPU time", flush=True)
        _print_figures(r["figures"])


def main() -> None:
    from govssl.plan import load_plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="training rows of the resampled table (0: none)")
    parser.add_argument("--skip-demo", action="store_true", help="leave out the demo plan")
    parser.add_argument("--caps", default="", help="comma-separated further caps for the check-alone runs")
    args = parser.parse_args()
    caps = [int(c) for c in args.caps.split(",") if c.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_demo:
            (folder / "demo").mkdir()
            compare("demo: audits/adult-income.yaml", load_plan(REPO / "audits" / "adult-income.yaml"),
                    folder / "demo", [c for c in caps if c is not None and c < 32561])
        if args.rows:
            (folder / "big").mkdir()
            plan = load_plan(_resampled_plan(args.rows, folder / "big"))
            compare(f"Adult resampled to {args.rows:,} training rows", plan, folder / "big", caps)

if __name__ == "__main__":
    main()
