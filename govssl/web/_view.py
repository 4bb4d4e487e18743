"""The dashboard's view of the store: one verified snapshot, re-read when the store changes.

Every page reads the store as the store commands do, verified: :meth:`AuditStore.snapshot`
walks the whole chain in one read snapshot and hands over the rows it hashed. Walking the chain
for every page would make a page of a large store take seconds, so the walk is kept and reused
for as long as the store is unchanged. Before each page the view looks at the store cheaply:
the chain head (one query) and, for a SQLite file, the file's and its write-ahead log's size
and modification time (a row changed outside govssl, even one that leaves the head alone,
changes them). Anything different, or a walk older than ``recheck_seconds`` (what catches an
in-place change in a server database, where no file can be looked at), and the chain is walked
again before the page is drawn. A walk that fails leaves a state without any run: every page
then shows the integrity failure instead of data.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from govssl.errors import GovsslError, StoreError
from govssl.records import AuditRun
from govssl.store import AuditStore, StoreSnapshot, VerifyReport

__all__ = ["State", "StoreView"]

RUN_CACHE = 64  # rebuilt runs kept per state (a run is rebuilt from its rows in ~10 ms)


@dataclass
class State:
    """One verified reading of the store (or why it could not be trusted)."""

    snapshot: StoreSnapshot | None
    problem: str  # '' when the chain verified
    fingerprint: tuple
    verified_at: datetime
    seconds: float  # how long the walk took
    report: VerifyReport | None = None  # the walk's report (None: the store could not be read)
    _runs: OrderedDict = field(default_factory=OrderedDict)
    _verdicts: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    cache: dict = field(default_factory=dict)  # per-state memo for pages (charts)

    @property
    def ok(self) -> bool:
        return self.snapshot is not None and not self.problem

    def run(self, run_id: str) -> AuditRun:
        """The run (exact id) with the waivers in force now applied to its decision."""
        from govssl.policy import apply_waivers

        if not self.ok:
            raise StoreError(f"no run is shown while the store does not verify: {self.problem}")
        with self._lock:
            if run_id in self._runs:
                self._runs.move_to_end(run_id)
                return self._runs[run_id]
        run = self.snapshot.run(run_id)
        model = run.training.model_sha256
        mine = [w for w in self.snapshot.waivers
                if w.run_id == run.run_id or (w.model_sha256 is not None and w.model_sha256 == model)]
        run.decision = apply_waivers(run.decision, mine, run_id=run.run_id, model_sha256=model)
        with self._lock:
            self._runs[run_id] = run
            while len(self._runs) > RUN_CACHE:
                self._runs.popitem(last=False)
        return run

    def stored_run(self, run_id: str) -> AuditRun:
        """The run as stored, without waivers applied (what `govssl diff` and `export` read)."""
        return self.snapshot.run(run_id)

    def waivers_of(self, row: dict) -> list:
        """The waivers (active or expired) that name this run or its model."""
        model = row["model_sha256"]
        return [w for w in self.snapshot.waivers
                if w.run_id == row["run_id"] or (w.model_sha256 is not None and w.model_sha256 == model)]

    def verdict(self, row: dict) -> tuple[str, int, int]:
        """The decision now (waivers in force applied), how many rules waivers turned and how
        many still block, for a run's row; only runs that a waiver names are rebuilt to find out."""
        if not self.waivers_of(row):
            return row["verdict"], 0, row["n_blocking"]
        key = row["run_id"]
        if key not in self._verdicts:
            decision = self.run(key).decision
            self._verdicts[key] = (decision.verdict, sum(o.status == "waived" for o in decision.outcomes),
                                   len(decision.blockers))
        return self._verdicts[key]

    def find(self, model: str = "", plan: str = "", decision: str = "", since: date | None = None,
             until: date | None = None) -> list[dict]:
        """The runs' rows, newest first, that match every filter given: ``model`` a sha256 or a
        prefix of it, ``plan`` the plan's name, ``decision`` pass / blocked (now, waivers
        applied) or waived (passing now because of a waiver), ``since`` / ``until`` days (UTC,
        inclusive)."""
        rows = []
        for row in self.snapshot.runs if self.ok else []:
            day = row["created_at"][:10]
            if model and not (row["model_sha256"] or "").startswith(model.lower()):
                continue
            if plan and row["plan_name"] != plan:
                continue
            if since and day < since.isoformat():
                continue
            if until and day > until.isoformat():
                continue
            verdict, waived, blocking = self.verdict(row)
            if decision == "waived" and not (verdict == "pass" and waived):
                continue
            if decision in ("pass", "blocked") and verdict != decision:
                continue
            rows.append({**row, "decision": verdict, "n_waived": waived, "n_blocking_now": blocking})
        return rows

    def monitoring(self, run_id: str | None = None) -> list[dict]:
        """The monitoring results of one run (exact id) or of every run, newest first, each as a
        dict for the pages: the result's fields, ``verdict``, the ids of the rules that block
        (``failing``) and of the warn rules that failed (``warning``), and ``plan_name`` of its run."""
        if not self.ok:
            return []
        key = ("monitoring", run_id)
        if key not in self.cache:
            plans = {r["run_id"]: r["plan_name"] for r in self.snapshot.runs}
            found = []
            for result in reversed(self.snapshot.monitoring(run_id)):
                decision = result.decision
                found.append({
                    "monitor_id": result.monitor_id, "run_id": result.run_id, "model_sha256": result.model_sha256,
                    "created_at": result.created_at, "batch_path": result.batch_path,
                    "batch_sha256": result.batch_sha256, "n_rows": result.n_rows, "labels": result.labels,
                    "policy_name": result.policy_name, "policy_version": result.policy_version,
                    "verdict": decision.verdict, "failing": [o.rule_id for o in decision.blockers],
                    "warning": [o.rule_id for o in decision.warnings], "position": result.position,
                    "plan_name": plans.get(result.run_id, ""),
                })
            self.cache[key] = found
        return self.cache[key]

    def find_monitoring(self, model: str = "", plan: str = "", decision: str = "", since: date | None = None,
                        until: date | None = None) -> list[dict]:
        """The monitoring results, newest first, matching the filters of :meth:`find` (no waiver
        applies to a monitoring result, so ``decision`` "waived" matches none)."""
        found = []
        for m in self.monitoring():
            day = m["created_at"][:10]
            if model and not (m["model_sha256"] or "").startswith(model.lower()):
                continue
            if plan and m["plan_name"] != plan:
                continue
            if since and day < since.isoformat():
                continue
            if until and day > until.isoformat():
                continue
            if decision == "waived" or (decision and m["verdict"] != decision):
                continue
            found.append(m)
        return found

    def row(self, run_id: str) -> dict | None:
        return next((r for r in self.snapshot.runs if r["run_id"] == run_id), None) if self.ok else None


class StoreView:
    """The store opened read-only, and the newest verified :class:`State` of it."""

    def __init__(self, url: str | None, recheck_seconds: float = 300.0):
        self.store = AuditStore(url, read_only=True)
        self.label = self.store.shown_url
        self.recheck_seconds = recheck_seconds
        self._sqlite_file = self.store.sqlite_file
        self._state: State | None = None
        self._lock = threading.Lock()

    def _fingerprint(self) -> tuple:
        try:
            head = str(self.store.head())
        except GovsslError as exc:
            head = f"unreadable: {exc}"
        files = []
        if self._sqlite_file is not None:
            for path in (self._sqlite_file, Path(f"{self._sqlite_file}-wal")):
                try:
                    st = path.stat()
                    files.append((st.st_ino, st.st_size, st.st_mtime_ns))
                except OSError:
                    files.append(None)
        return (head, *files)

    def state(self, force: bool = False) -> State:
        """The verified state of the store now: the last one if nothing changed, else a new walk."""
        with self._lock:
            fingerprint = self._fingerprint()
            current = self._state
            stale = (
                force or current is None or current.fingerprint != fingerprint
                or time.monotonic() - current.cache.get("_walked", 0.0) > self.recheck_seconds
            )
            if stale:
                current = self._walk(fingerprint)
                self._state = current
            return current

    def _walk(self, fingerprint: tuple) -> State:
        started = time.monotonic()
        now = datetime.now(timezone.utc)
        try:
            snapshot = self.store.snapshot()
            problem = "" if snapshot.report.ok else snapshot.report.first_problem
        except GovsslError as exc:  # a damaged file, a lost connection: shown, never trusted
            snapshot, problem = None, str(exc)
        state = State(snapshot if not problem else None, problem, fingerprint, now,
                      time.monotonic() - started, snapshot.report if snapshot is not None else None)
        state.cache["_walked"] = time.monotonic()
        return state

    def verify_files(self):
        """A full `govssl verify` now: the chain walked and every artifact file hashed."""
        return self.store.verify(check_files=True)

