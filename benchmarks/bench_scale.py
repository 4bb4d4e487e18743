"""Audit time, time of each part and peak memory of the demo plan on Adult resampled to 100k, 1M, 10M rows.

Builds each table in a temporary folder (the official Adult train and test rows, drawn with
replacement by a fixed seed, written as CSV in chunks so that building a large table does not
hold it in memory), writes a copy of the demo plan (audits/adult-income.yaml: same training,
same checks, same policy) that reads it, and runs each audit in its own child process. For each
size it prints the whole audit's time, the time of each part (verifying the data file and any
manifest, loading and encoding the table, the preflight checks, training, each check; the
poisoning check on its own line, so that a change to it shows), and the child's peak resident
set size (``ru_maxrss`` of the finished child, read with ``resource.getrusage(RUSAGE_CHILDREN)``
after each child alone; memory-mapped file pages the audit touched count in it).

    python benchmarks/bench_scale.py [--sizes 100000 1000000 10000000] [--out-of-core auto|always|never]
                                     [--keep DIR] [--json results.json] [--where MB]

``--where MB`` also says where the memory goes: a thread in the child reads the process's
resident set (anonymous and file-backed pages apart, from /proc/self/status on Linux) every
20 ms, and each time it passes its last record by MB megabytes, prints it with the innermost
govssl frames of the main thread at that moment.

The cache of encoded tables (see docs/scale.md) goes to a folder inside the run's temporary
folder, even with ``--keep`` (which keeps only the tables and plans), so that every size is
encoded once, from the CSV, inside the timed audit.
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

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "audits" / "adult-income.yaml"
CHUNK = 1_000_000


def build_table(n: int, path: Path, seed: int = 0) -> None:
    """``n`` Adult rows drawn with replacement (train and test files pooled), written as CSV."""
    import numpy as np
    import pandas as pd

    from govssl.data._builtin import load_builtin

    _, train, test, _ = load_builtin("adult")
    pool = pd.concat([train, test], ignore_index=True)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".partial")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        for start in range(0, n, CHUNK):
            rows = rng.integers(0, len(pool), size=min(CHUNK, n - start))
            pool.iloc[rows].to_csv(fh, index=False, header=start == 0)
    tmp.replace(path)


def write_plan(table: Path, folder: Path, out_of_core: str) -> Path:
    """The demo plan reading ``table`` instead of the built-in data (no datasheet: its manifest
    describes the built-in files)."""
    import yaml

    plan = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    plan["dataset"] = {"path": str(table), "target": "income", "positive_label": ">50K",
                       "sensitive": ["sex", "race"], "drop": ["fnlwgt"]}
    if out_of_core:
        plan["dataset"]["out_of_core"] = out_of_core
    plan["policy"] = str(REPO / "policies" / "default.yaml")
    plan["output"] = {"dir": str(folder / "out")}
    path = folder / f"plan-{table.stem}.yaml"
    path.write_text(json.dumps(plan, indent=2), encoding="utf-8")  # JSON is YAML
    return path


def _resident() -> dict[str, float]:
    """The process's resident set in GB: total, anonymous (heap) and file-backed (mapped) pages."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 2**20
    return out


def watch_peaks(step_mb: float) -> None:
    """Print the resident set and the main thread's innermost govssl frames each time the set
    passes its last printed value by ``step_mb`` MB (a daemon thread, 20 ms between reads)."""
    import threading
    import traceback

    main = threading.main_thread().ident

    def sample() -> None:
        last = 0.0
        while True:
            now = _resident()
            if now.get("VmRSS", 0.0) >= last + step_mb / 1024:
                last = now["VmRSS"]
                frames = [f"{Path(f.filename).name}:{f.lineno} {f.name}"
                          for f in traceback.extract_stack(sys._current_frames().get(main))
                          if f"{os.sep}govssl{os.sep}" in f.filename][-4:]
                print(f"    RSS {now['VmRSS']:.2f} GB (heap {now.get('RssAnon', 0):.2f}, mapped "
                      f"{now.get('RssFile', 0):.2f}) at {' < '.join(reversed(frames)) or '(outside govssl)'}",
                      file=sys.stderr, flush=True)
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()


def child(plan_path: str, result_path: str) -> None:
    """Run one audit in this process, timing its parts, and write the figures as JSON."""
    import warnings

    if os.environ.get("BENCH_SCALE_WHERE"):
        watch_peaks(float(os.environ["BENCH_SCALE_WHERE"]))

    warnings.simplefilter("ignore")
    from govssl import audit, data, provenance, train

    from govssl.checks import base

    parts: dict[str, float] = {}
    begun = time.perf_counter()

    def note(text: str) -> None:
        """A line on stderr as each part ends (a long run can be followed in its log), with the
        process's CPU seconds so far: on a shared machine they say more than the wall clock."""
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"  [{time.perf_counter() - begun:7.0f} s, cpu {time.process_time():7.0f} s] {text}; "
              f"peak RSS so far {peak:.2f} GB", file=sys.stderr, flush=True)

    def timed(module, name, label):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - started
                parts[label] = parts.get(label, 0.0) + seconds
                note(f"{label} took {seconds:.1f} s")

        setattr(module, name, wrapper)

    create = base.create_check

    def create_check(name, **params):  # each check's run, timed as it ends
        check = create(name, **params)
        run = check.run

        def timed_run(ctx):
            result = run(ctx)
            note(f"check {name} took {result.seconds:.1f} s ({result.status})")
            return result

        check.run = timed_run
        return check

    base.create_check = create_check

    timed(provenance, "verify_plan_manifest", "manifest")
    timed(data, "load", "load/encode")
    timed(audit, "run_preflight", "preflight")
    timed(train, "fit", "training")
    db = Path(result_path).with_suffix(".db")
    started = time.perf_counter()
    run = audit.run_audit(plan_path, db_url=f"sqlite:///{db}")
    total = time.perf_counter() - started
    training_seconds = parts.pop("training", 0.0)
    checks = {r.check: r.seconds for r in run.results if r.check != "preflight"}
    # train.fit is also called by checks that retrain (poisoning, privacy canaries); the audit's
    # own training is the record's time
    parts["training"] = float(run.training.seconds)
    out = {"total": total, "cpu": time.process_time(), "parts": parts, "checks": checks,
           "retrain_seconds_inside_checks": training_seconds - float(run.training.seconds),
           "statuses": {r.check: r.status for r in run.results},
           "errors": {r.check: r.reason for r in run.results if r.status == "errored"},
           "model_sha256": run.training.model_sha256, "passed": bool(run.decision.passed),
           "peak_rss_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    Path(result_path).write_text(json.dumps(out, indent=2), encoding="utf-8")


def run_size(n: int, folder: Path, cache: Path, out_of_core: str, where: float | None = None) -> dict:
    table = folder / f"adult-{n}.csv"
    if not table.exists():
        started = time.perf_counter()
        build_table(n, table)
        print(f"  built {table.name} ({table.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - started:.0f} s",
              flush=True)
    plan = write_plan(table, folder, out_of_core)
    result = folder / f"result-{n}.json"
    env = dict(os.environ, GOVSSL_CACHE_DIR=str(cache))
    if where:
        env["BENCH_SCALE_WHERE"] = str(where)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", str(plan), str(result)], env=env,
                          stdout=subprocess.PIPE, text=True, check=False)  # the child's notes go to stderr as they come
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0 or not result.exists():
        print(proc.stdout[-3000:])
        return {"rows": n, "failed": proc.returncode, "wall": wall}
    out = json.loads(result.read_text(encoding="utf-8"))
    # the children's maximum only rises: it is this child's peak when it exceeds every earlier one
    out["peak_rss"] = max(out["peak_rss_self"], after * 1024 if after > before else 0)
    out.update(rows=n, wall=wall)
    return out


def report(out: dict) -> None:
    if "failed" in out:
        print(f"{out['rows']:>12,} rows: the audit failed (exit {out['failed']}) after {out['wall']:.0f} s")
        return
    print(f"{out['rows']:>12,} rows: audit {out['total']:.1f} s (process {out['wall']:.1f} s, "
          f"{out.get('cpu', float('nan')):.0f} CPU s), "
          f"peak RSS {out['peak_rss'] / 1e9:.2f} GB, model {out['model_sha256'][:12]}")
    for name, seconds in out["parts"].items():
        print(f"    {name:<20} {seconds:8.1f} s")
    for name, seconds in out["checks"].items():
        label = f"check {name}" + ("  (poisoning, on its own)" if name == "poisoning" else "")
        print(f"    {label:<20} {seconds:8.1f} s")
    rest = out["total"] - sum(out["parts"].values()) - sum(out["checks"].values())
    print(f"    {'reports, store':<20} {rest:8.1f} s")
    for name, reason in out["errors"].items():
        print(f"    errored: {name}: {reason[:200]}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--out-of-core", choices=["auto", "always", "never"],
                        help="dataset.out_of_core in the plans (default: the plan's default, auto)")
    parser.add_argument("--keep", type=Path, help="build the tables in (and keep) this folder")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--where", type=float, metavar="MB",
                        help="print where the resident set grows, at each MB megabytes (Linux)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="govssl-bench-scale-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results = []
        for n in args.sizes:
            print(f"{n:,} rows (dataset.out_of_core: {args.out_of_core or 'auto, the default'})", flush=True)
            # the cache lives in this run's temporary folder, never in --keep: a table encoded by
            # an earlier run would make its load time the cache's check instead of the encoding
            out = run_size(n, folder, Path(tmp) / "cache", args.out_of_core, args.where)
            report(out)
            results.append(out)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
        done = {r["rows"]: r["total"] for r in results if "total" in r}
        for small, large in ((100_000, 1_000_000), (1_000_000, 10_000_000)):
            if small in done and large in done:
                print(f"time({large:,}) / time({small:,}) = {done[large] / done[small]:.1f}")


if __name__ == "__main__":
    main()
