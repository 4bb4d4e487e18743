"""Dashboard page times over a store of 1,000 runs: median and p95 per page (target < 200 ms).

The store is made fast: one real quick audit (the CLI, 4,000 Adult rows, performance and
fairness checks), whose stored run is then copied through the store API under new run ids and
dates until the store holds ``--runs`` runs (every copy a full run of the same rows, each
ledgered). Then `govssl serve` starts in a subprocess on a free loopback port and each page is
asked for ``--repeat`` times over HTTP (httpx): the runs list (plain and filtered), run pages
(cycling through ``--distinct`` different runs, so most are rebuilt from the snapshot rather than
cached), the diff, a model's history (all of its runs), the integrity page. Also printed: the
first walk of the chain at start-up, and a chart's first (drawn by matplotlib) and later
(cached) answers, which the run page loads as images after it is shown.

    python benchmarks/bench_web.py [--runs 1000] [--repeat 30] [--distinct 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_MS = 200.0


def real_run(folder: Path) -> str:
    """One quick real audit through the CLI; returns the store URL."""
    import yaml

    from govssl.data._builtin import load_builtin
    from tests.conftest import fast_plan_data

    _, train, test, _ = load_builtin("adult")
    train.sample(4000, random_state=0).to_csv(folder / "train.csv", index=False)
    test.sample(3000, random_state=0).to_csv(folder / "test.csv", index=False)
    (folder / "plan.yaml").write_text(yaml.safe_dump(fast_plan_data(folder / "train.csv", folder / "test.csv")))
    db = f"sqlite:///{folder / 'audit.db'}"
    result = subprocess.run([sys.executable, "-m", "govssl.cli", "audit", str(folder / "plan.yaml"), "--db", db,
                             "--out", str(folder / "out"), "--quiet", "--json"], capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1):
        sys.exit(f"the quick audit failed (exit {result.returncode}): {result.stderr}")
    return db


def fill(db: str, runs: int) -> tuple[int, float]:
    """Copy the store's run until it holds ``runs`` runs; returns (ledger entries, seconds)."""
    from govssl.store import AuditStore

    store = AuditStore(db)
    (source,), _ = store.read_runs([store.list_runs()[0]["run_id"]])
    start = datetime.fromisoformat(source.created_at)
    began = time.perf_counter()
    for i in range(1, runs):
        created = start - timedelta(hours=i)
        run_id = f"{created.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{i:06x}"
        copy = dataclasses.replace(source, run_id=run_id, created_at=created.isoformat(timespec="seconds"),
                                   out_dir=str(Path(source.out_dir).with_name(run_id)))
        store.save(copy)
        if i % 100 == 0:
            print(f"  {i + 1} runs stored ({time.perf_counter() - began:.0f} s)", flush=True)
    return store.head().seq, time.perf_counter() - began


def serve(db: str) -> tuple[subprocess.Popen, str, float]:
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "govssl.cli", "serve", "--db", db, "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    url = None
    while url is None:
        line = proc.stderr.readline()
        if not line:
            sys.exit("govssl serve did not start")
        found = re.search(r"read-only at (http://\S+/)", line)
        url = found.group(1) if found else None
    return proc, url, time.perf_counter() - began


def timed(client, url: str) -> float:
    began = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        sys.exit(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--distinct", type=int, default=20, help="different runs whose pages are asked for")
    parser.add_argument("--keep", type=Path, default=None, help="build the store in this folder and keep it "
                        "(reused when it already holds the runs)")
    args = parser.parse_args()
    import httpx

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-web-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{folder / 'audit.db'}"
    try:
        if not (folder / "audit.db").exists():
            began = time.perf_counter()
            db = real_run(folder)
            print(f"one real quick audit: {time.perf_counter() - began:.1f} s")
            entries, seconds = fill(db, args.runs)
            print(f"store filled to {args.runs} runs, {entries} ledger entries, in {seconds:.0f} s")
        proc, base, startup = serve(db)
        try:
            with httpx.Client(base_url=base, timeout=600) as client:
                first = timed(client, "/")
                print(f"govssl serve: start-up {startup:.1f} s (imports and the first walk of the chain), "
                      f"first page {first:.0f} ms")
                rows = json.loads(subprocess.run(
                    [sys.executable, "-m", "govssl.cli", "runs", "--db", db, "--json"],
                    capture_output=True, text=True, check=True).stdout)
                ids = [r["run_id"] for r in rows]
                model = rows[0]["model_sha256"]
                pick = ids[:: max(len(ids) // args.distinct, 1)][: args.distinct]
                pages = {
                    "runs list": lambda i: "/",
                    "runs list, decision filter": lambda i: f"/?decision={rows[0]['verdict']}&since=2000-01-01",
                    f"run page ({len(pick)} runs in turn)": lambda i: f"/runs/{pick[i % len(pick)]}",
                    "diff": lambda i: f"/diff?a={pick[i % len(pick)]}&b={pick[(i + 1) % len(pick)]}",
                    f"model history ({len(ids)} runs)": lambda i: f"/models/{model}",
                    "integrity": lambda i: "/integrity",
                }
                print(f"\n{'page':<40} {'median ms':>10} {'p95 ms':>10}   (target < {TARGET_MS:.0f} ms; "
                      f"{args.repeat} requests each)")
                worst = 0.0
                for name, url in pages.items():
                    times = sorted(timed(client, url(i)) for i in range(args.repeat))
                    median, p95 = statistics.median(times), times[min(int(0.95 * len(times)), len(times) - 1)]
                    worst = max(worst, p95)
                    print(f"{name:<40} {median:>10.1f} {p95:>10.1f}   {'ok' if p95 < TARGET_MS else 'SLOW'}")
                cold = [timed(client, f"/runs/{run_id}/charts/fairness.svg") for run_id in pick[:5]]
                warm = [timed(client, f"/runs/{pick[0]}/charts/fairness.svg") for _ in range(args.repeat)]
                print(f"{'chart, first drawing (matplotlib)':<40} {statistics.median(cold):>10.1f} {max(cold):>10.1f}"
                      f"   (an image the run page loads after it is shown)")
                print(f"{'chart, cached':<40} {statistics.median(warm):>10.1f} "
                      f"{sorted(warm)[min(int(0.95 * len(warm)), len(warm) - 1)]:>10.1f}")
                print(f"\nslowest p95 over the pages: {worst:.1f} ms ({'under' if worst < TARGET_MS else 'OVER'} "
                      f"the {TARGET_MS:.0f} ms target)")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
