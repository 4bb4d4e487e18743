"""Post-release monitoring on the real Adult test split: false alarms, power, CBPE, speed, and
Evidently's DataDriftPreset on the same batches.

The model is the demo audit's (``audits/adult-income.yaml``; ``--run`` and ``--db`` reuse a stored
one). Every batch is drawn from the real Adult test rows. Because the audit's reference profile
holds the whole test split, a batch drawn from it would partly be its own reference; so, as the
issue asks, the test split is cut into random halves: the profile is rebuilt (with the audited
model and input encoding) from one half and the batches are drawn from the other. A new random
cut every ``--batches-per-split`` batches.

- False alarms: ``--batches`` batches of 1,000 rows without any shift. Each drift test's raw
  false-alarm rate (p < 0.05 before the Holm adjustment), and the monitoring decision's (the
  built-in pack: exit 1), against 5% plus twice its Monte Carlo standard error.
- Power: shifts built by resampling the held-out half, as in Rabanser et al. 2019, "Failing
  Loudly": covariate (people aged 50 or more three times as likely to be drawn), label (positive
  rate doubled), subgroup (race=Black removed), and a small covariate shift (aged 50 or more 1.5
  times as likely) at 1,000 and at 10,000 rows (drawn with replacement).
- Evidently 0.7's DataDriftPreset on the same reference half and batches, run by a Python that
  has it (``--evidently-python``; it needs pandas < 3, so it lives in its own environment and is
  no dependency of govssl): its dataset-drift flag (share of drifted columns >= 0.5) and whether
  any column drifted.
- CBPE: under the covariate shift, how often the estimated accuracy's 95% interval covers the
  batch's realised accuracy.
- Speed: ``govssl monitor`` on a 1,000,000-row CSV batch (end to end, a child process: wall
  time and peak RSS), and Evidently's preset on 100,000 rows, in the same run.

    python benchmarks/bench_drift.py [--run RUN --db URL] [--batches 500] [--shift-batches 100]
        [--evidently-python PATH] [--no-speed]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from govssl.data import as_category_strings  # noqa: E402
from govssl.data._builtin import load_builtin  # noqa: E402
from govssl.monitor._measure import encoder_of, measure  # noqa: E402
from govssl.monitor._profile import Profile, build_profile, embed_and_score  # noqa: E402
from govssl.monitor._run import load_model  # noqa: E402
from govssl.policy import builtin_policy_path, decide, load_policy  # noqa: E402

ALPHA = 0.05
TESTS = ("feature_drift", "prediction_drift", "embedding_drift", "ood", "group_mix")

EVIDENTLY_WORKER = r'''
import json, os, resource, sys, time
os.environ["DO_NOT_TRACK"] = "1"; os.environ["EVIDENTLY_DISABLE_TELEMETRY"] = "1"
import warnings; warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
pool = pd.read_parquet(sys.argv[1]); jobs = np.load(sys.argv[2]); out = []
for key in sorted(jobs.files, key=lambda k: int(k.split("_")[1])):
    if not key.startswith("batch_"):
        continue
    i = int(key.split("_")[1])
    ref = pool.iloc[jobs[f"ref_{i}"]].reset_index(drop=True)
    cur = pool.iloc[jobs[key]].reset_index(drop=True)
    t = time.perf_counter()
    snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    seconds = time.perf_counter() - t
    count = share = None; drifted_any = False
    for m in snap.dict()["metrics"]:
        v = m.get("value"); name = str(m.get("metric_name") or m.get("metric_id") or "")
        if name.startswith("DriftedColumnsCount") and isinstance(v, dict):
            count, share = v.get("count"), v.get("share")
    out.append({"i": i, "count": count, "share": share, "seconds": seconds})
print(json.dumps({"results": out, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def _audit(db: str) -> str:
    from govssl.audit import run_audit

    run = run_audit(REPO / "audits" / "adult-income.yaml", db_url=db, out_root=Path(tempfile.mkdtemp()) / "out")
    return run.run_id


def _stored(run_id: str, db: str):
    from govssl.monitor import PROFILE_KIND
    from govssl.monitor._profile import load_profile
    from govssl.store import AuditStore

    (run,), _ = AuditStore(db, read_only=True).read_runs([run_id])
    profile = load_profile(next(a for a in run.artifacts if a.kind == PROFILE_KIND).path,
                           next(a for a in run.artifacts if a.kind == PROFILE_KIND).sha256)
    model = load_model(next(a for a in run.artifacts if a.kind == "model").path, run.training.model_sha256)
    return run, profile, model


def _half_profile(stored: Profile, model, half: pd.DataFrame, seed: int) -> Profile:
    """The reference profile of the audited model, rebuilt from one half of the test split."""
    meta = stored.meta
    encoder = encoder_of(meta)
    y = (half[meta["target"]].astype(str) == meta["positive_label"]).to_numpy(dtype=np.int64)
    frame = half.reset_index(drop=True)
    data = SimpleNamespace(
        test=frame, encoder=encoder, X_test=encoder.transform(frame), y_test=y, target=meta["target"],
        positive_label=meta["positive_label"], classes=tuple(meta["classes"]), sensitive=tuple(meta["sensitive"]),
        sensitive_frame=lambda split="test": pd.DataFrame({c: as_category_strings(frame[c]) for c in meta["sensitive"]}),
    )
    new_meta, scores, reference = build_profile(data, model, seed)
    return Profile(new_meta, scores, reference)


def _draw(rng, pool: pd.DataFrame, kind: str, n: int) -> np.ndarray:
    """Row positions of ``pool`` for one batch of ``n`` rows under the shift ``kind``."""
    m = len(pool)
    replace = n > m // 2
    if kind == "none":
        return rng.choice(m, n, replace=replace)
    if kind in ("covariate", "small"):
        factor = 3.0 if kind == "covariate" else 1.5
        w = np.where(pool["age"].to_numpy() >= 50, factor, 1.0)
        return rng.choice(m, n, replace=replace, p=w / w.sum())
    if kind == "label":
        pos = np.flatnonzero(pool["income"].to_numpy() == ">50K")
        neg = np.flatnonzero(pool["income"].to_numpy() != ">50K")
        rate = 2 * len(pos) / m
        k = int(round(n * rate))
        return np.concatenate([rng.choice(pos, k, replace=True), rng.choice(neg, n - k, replace=False)])
    if kind == "subgroup":
        keep = np.flatnonzero(pool["race"].to_numpy() != "Black")
        return rng.choice(keep, n, replace=replace)
    raise ValueError(kind)


def _alarms(results, decision) -> dict:
    raw = {}
    for r in results:
        for m in r.measurements:
            if m.metric == "drift_p_value":
                raw.setdefault(r.check, []).append(m.details["p_value"])
    flags = {check: min(ps) < ALPHA for check, ps in raw.items()}
    flags["feature_drift_per_feature"] = [p < ALPHA for p in raw.get("feature_drift", [])]
    flags["decision"] = not decision.passed
    est = next(m for r in results for m in r.measurements if m.metric == "estimated_accuracy")
    flags["cbpe"] = (est.value, est.ci_low, est.ci_high)
    return flags


def _mc(rate: float, n: int) -> float:
    return float(np.sqrt(max(rate * (1 - rate), 1e-12) / n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="a stored run of audits/adult-income.yaml (default: audit now)")
    parser.add_argument("--db", default=None, help="its store URL")
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--batches-per-split", type=int, default=10)
    parser.add_argument("--shift-batches", type=int, default=100)
    parser.add_argument("--evidently-python", default=None, help="a Python with evidently 0.7 (and pandas < 3)")
    parser.add_argument("--evidently-batches", type=int, default=100,
                        help="Evidently runs on the first N batches of each kind (it is slow)")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="measure only the cuts k with k %% N == K and save the rows (--save); see --merge")
    parser.add_argument("--save", default=None, metavar="FILE", help="where a shard writes its rows (JSON)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="FILE", help="print the figures of saved shards")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.merge:
        rows, ev, seconds = {}, {}, []
        for name in args.merge:
            saved = json.loads(Path(name).read_text())
            rows.update({int(i): r for i, r in saved["rows"].items()})
            ev.update({int(i): r for i, r in saved["evidently"].items()})
            seconds += saved["seconds"]
        _summary([rows[i] for i in sorted(rows)], sorted(rows), ev, seconds)
        return
    db = args.db or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    run_id = args.run or _audit(db)
    run, stored, model = _stored(run_id, db)
    policy = load_policy(builtin_policy_path("monitoring"))
    _, _, test, _ = load_builtin("adult")
    test = test.reset_index(drop=True)
    features = [*stored.meta["numeric"], *stored.meta["categorical"]]
    if args.speed_only:
        _speed(run.run_id, db, test, features, args.evidently_python)
        return
    shard, shards = (int(x) for x in args.shard.split("/")) if args.shard else (0, 1)
    mine = lambda i: (i // args.batches_per_split) % shards == shard  # noqa: E731
    print(f"run {run.run_id}; Adult test split {len(test):,} rows; reference = a random half, batches from the other")

    rng = np.random.default_rng(args.seed)
    plan = [("none", 1000)] * args.batches
    for kind, n in (("covariate", 1000), ("label", 1000), ("subgroup", 1000), ("small", 1000), ("small", 10_000)):
        plan += [(kind, n)] * args.shift_batches
    # every batch is drawn first, so that Evidently (another process) works through its share of
    # them while govssl measures
    draws, jobs, seen = [], {}, {}
    ref_idx = pool_idx = None
    for i, (kind, n) in enumerate(plan):
        if i % args.batches_per_split == 0:
            perm = rng.permutation(len(test))
            ref_idx, pool_idx = np.sort(perm[: len(test) // 2]), np.sort(perm[len(test) // 2:])
        picked = _draw(rng, test.iloc[pool_idx].reset_index(drop=True), kind, n)
        draws.append((kind, n, ref_idx, pool_idx[picked]))
        seen[(kind, n)] = seen.get((kind, n), 0) + 1
        if seen[(kind, n)] <= args.evidently_batches and mine(i):
            jobs[f"ref_{i}"], jobs[f"batch_{i}"] = ref_idx, pool_idx[picked]
    evidently = None
    if args.evidently_python:
        tmp = tempfile.mkdtemp()
        test[features].to_parquet(f"{tmp}/pool.parquet")
        np.savez(f"{tmp}/jobs.npz", **jobs)
        evidently = subprocess.Popen([args.evidently_python, "-c", EVIDENTLY_WORKER, f"{tmp}/pool.parquet",
                                      f"{tmp}/jobs.npz"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    rows, ours_seconds, profile = {}, [], None
    started = time.perf_counter()
    for i, (kind, n, ref, picked) in enumerate(draws):
        if not mine(i):
            continue
        if i % args.batches_per_split == 0:
            profile = _half_profile(stored, model, test.iloc[ref], args.seed + i)
        batch = test.iloc[picked].reset_index(drop=True)
        t = time.perf_counter()
        results = measure(profile, model, batch, None, args.seed + i)
        decision = decide(policy, results)
        ours_seconds.append(time.perf_counter() - t)
        flags = _alarms(results, decision)
        proba, _ = embed_and_score(model, encoder_of(stored.meta).transform(batch))
        y = (batch["income"] == ">50K").to_numpy()
        flags.update(kind=kind, n=n, realised=float((proba.argmax(axis=1) == y).mean()))
        rows[i] = flags
        if len(rows) % 50 == 0:
            print(f"  {len(rows)} batches measured ({time.perf_counter() - started:.0f} s)", flush=True)
    ev = {}
    if evidently is not None:
        stdout, stderr = evidently.communicate()
        if evidently.returncode != 0:
            print("  Evidently failed: " + stderr.strip().splitlines()[-1])
        else:
            ev = {r["i"]: r for r in json.loads(stdout.strip().splitlines()[-1])["results"]}
    if args.save:
        Path(args.save).write_text(json.dumps({"rows": rows, "evidently": ev, "seconds": ours_seconds},
                                              default=lambda o: o.tolist() if hasattr(o, "tolist") else bool(o)))
    else:
        _summary([rows[i] for i in sorted(rows)], sorted(rows), ev, ours_seconds)

    if not args.no_speed:
        _speed(run.run_id, db, test, features, args.evidently_python)


def _summary(rows: list[dict], index: list[int], ev: dict, ours_seconds: list[float]) -> None:
    """Print every figure from the measured batches (``index``: their positions in the plan)."""
    print(f"\ngovssl monitor: {np.median(ours_seconds):.2f} s median per 1,000-row batch (measure + decide; "
          f"2 shared cores under load)")
    null = [r for r in rows if r["kind"] == "none"]
    n0 = len(null)
    print(f"\nFalse alarms on {n0} batches of 1,000 rows without shift (limit: 5% + 2 Monte Carlo SE "
          f"= {ALPHA + 2 * _mc(ALPHA, n0):.1%})")
    for test_name in TESTS:
        rate = np.mean([r[test_name] for r in null])
        print(f"  {test_name:<22} raw p < 0.05 in {rate:6.1%}" + ("   (any of the features)" if test_name == "feature_drift" else ""))
    per_feature = np.array([r["feature_drift_per_feature"] for r in null], dtype=float)
    print(f"  {'each feature':<22} raw p < 0.05 in {per_feature.mean(axis=0).min():.1%}..{per_feature.mean(axis=0).max():.1%} "
          f"(range over the {per_feature.shape[1]} features)")
    decision_rate = np.mean([r["decision"] for r in null])
    print(f"  {'monitoring decision':<22} blocked in {decision_rate:6.1%}  (Holm over every drift test; "
          f"MC SE {_mc(decision_rate, n0):.1%})")

    print("\nDetection (monitoring decision blocked)")
    kinds = [("covariate", 1000), ("label", 1000), ("subgroup", 1000), ("small", 1000), ("small", 10_000)]
    names = {"covariate": "covariate (age >= 50 x3)", "label": "label (positive rate x2)",
             "subgroup": "subgroup (race=Black removed)", "small": "small covariate (age >= 50 x1.5)"}
    detection = {}
    for kind, n in kinds:
        sel = [r for r in rows if r["kind"] == kind and r["n"] == n]
        detection[(kind, n)] = np.mean([r["decision"] for r in sel])
        tests = ", ".join(f"{t} {np.mean([r[t] for r in sel]):.0%}" for t in TESTS)
        print(f"  {names[kind]:<34} {n:>6,} rows: {detection[(kind, n)]:6.1%}   (raw per test: {tests})")

    cov = [r for r in rows if r["kind"] == "covariate"]
    covered = np.mean([lo <= r["realised"] <= hi for r in cov for (_, lo, hi) in [r["cbpe"]]])
    err = np.mean([abs(r["cbpe"][0] - r["realised"]) for r in cov])
    print(f"\nCBPE under the covariate shift: the 95% interval covers the realised accuracy in {covered:.1%} of "
          f"{len(cov)} batches (target >= 90%); mean |estimate - realised| {err:.4f}")
    null_cov = np.mean([lo <= r["realised"] <= hi for r in null for (_, lo, hi) in [r["cbpe"]]])
    print(f"CBPE without shift: covers in {null_cov:.1%} of {n0} batches")

    if ev:
        print("\nEvidently DataDriftPreset on the same batches (its own process, run meanwhile)")
        print(f"  {np.median([r['seconds'] for r in ev.values()]):.2f} s median per batch")
        at = dict(zip(index, rows))
        for label, sel in [("no shift (false alarms)", [i for i in index if at[i]["kind"] == "none"])] + [
                (f"{names[k]} {n:,} rows", [i for i in index if at[i]["kind"] == k and at[i]["n"] == n])
                for k, n in kinds]:
            sel = [i for i in sel if i in ev]  # the batches Evidently ran on (the first of each kind)
            dataset = np.mean([ev[i]["share"] is not None and ev[i]["share"] >= 0.5 for i in sel])
            anycol = np.mean([(ev[i]["count"] or 0) > 0 for i in sel])
            ours = np.mean([at[i]["decision"] for i in sel])
            print(f"  {label:<44} {len(sel):>4} batches: govssl {ours:6.1%}   Evidently dataset drift "
                  f"{dataset:6.1%}, any column drifted {anycol:6.1%}")


def _child(argv: list[str]) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """Wall time, CPU time (user + system) and peak RSS (MB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    peak = after.ru_maxrss if after.ru_maxrss > before.ru_maxrss else float("nan")
    return seconds, cpu, peak / 1024, done


def _speed(run_id: str, db: str, test: pd.DataFrame, features: list[str], evidently_python: str | None) -> None:
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        big = test.iloc[rng.integers(0, len(test), 1_000_000)].drop(columns=["income"])
        big.to_csv(f"{tmp}/big.csv", index=False)
        govssl = str(Path(sys.executable).with_name("govssl"))
        seconds, cpu, rss, done = _child([govssl, "monitor", run_id, "--data", f"{tmp}/big.csv", "--db", db, "--json"])
        print(f"\nSpeed: govssl monitor on 1,000,000 rows (CSV, end to end): {seconds:.1f} s wall, {cpu:.1f} s CPU, "
              f"peak RSS {rss:,.0f} MB (exit {done.returncode}; targets 60 s, 2,048 MB; 2 cores shared with other work)")
        if done.returncode not in (0, 1):
            print("  " + done.stderr.strip()[-300:])
        else:
            timing = {r["check"]: r["seconds"] for r in json.loads(done.stdout)["checks"]}
            print("  inside: " + ", ".join(f"{k} {v:.1f} s" for k, v in timing.items() if v)
                  + f"; the command's own total {json.loads(done.stdout)['seconds']:.1f} s")
        if evidently_python:
            pool = test[features]
            pool.to_parquet(f"{tmp}/pool.parquet")
            np.savez(f"{tmp}/jobs.npz", ref_0=np.arange(len(test) // 2),
                     batch_0=rng.integers(0, len(test), 100_000))
            seconds, cpu, _, done = _child([evidently_python, "-c", EVIDENTLY_WORKER, f"{tmp}/pool.parquet",
                                            f"{tmp}/jobs.npz"])
            if done.returncode == 0:
                inner = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"Speed: Evidently DataDriftPreset on 100,000 rows: {inner['results'][0]['seconds']:.1f} s for the report, "
                      f"{seconds:.1f} s wall and {cpu:.1f} s CPU for the process, peak RSS {inner['max_rss_mb']:,.0f} MB")
            else:
                print("  Evidently failed: " + done.stderr.strip()[-300:])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
