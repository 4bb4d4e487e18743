"""An audit stopped by SIGTERM or SIGHUP leaves what Ctrl-C leaves: no run folder, nothing stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from govssl.audit import Terminated, run_audit, stop_on_signals
from govssl.store import AuditStore
from tests.conftest import REPO, fast_plan_data


def _plan(adult_csvs, write_plan, **checks):
    """The fast plan, with enough epochs that training and the poisoning retrains take seconds."""
    data = fast_plan_data(*adult_csvs)
    data["training"]["finetune"]["epochs"] = 40
    data["checks"] = checks or {"performance": {"n_boot": 100}}
    return write_plan(data)


def _wait_for(predicate, process, what: str, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            pytest.fail(f"the audit ended (exit {process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} within {timeout:.0f} s")
        time.sleep(0.05)


def _run_folders(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.is_dir()] if out.exists() else []


def _start(plan: Path, out: Path, db: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "govssl.cli", "audit", str(plan), "--out", str(out), "--db", f"sqlite:///{db}", "-q"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _assert_nothing_left(process, signum: int, out: Path, db: Path) -> None:
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert f"stopped by {signal.Signals(signum).name}; nothing of the run was kept" in stderr
    assert "Traceback" not in stderr
    assert _run_folders(out) == []
    if db.exists():
        store = AuditStore(f"sqlite:///{db}")
        assert store.list_runs() == []
        assert store.verify().ok


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_signal_during_training__no_run_folder_and_nothing_stored(adult_csvs, write_plan, tmp_path, signum):
    out, db = tmp_path / "out", tmp_path / "audit.db"
    process = _start(_plan(adult_csvs, write_plan), out, db)
    _wait_for(lambda: _run_folders(out), process, "run folder")
    time.sleep(0.5)  # training starts as soon as the folder exists
    (folder,) = _run_folders(out)
    assert not (folder / "model.safetensors").exists(), "training ended before the signal: raise the epochs"
    process.send_signal(signum)
    _assert_nothing_left(process, signum, out, db)


def test_sigterm_during_checks__model_and_predictions_removed(adult_csvs, write_plan, tmp_path):
    # the poisoning check retrains twice, so the checks take longer than training did
    plan = _plan(adult_csvs, write_plan, performance={"n_boot": 100}, poisoning={"rates": [0.01, 0.05]})
    out, db = tmp_path / "out", tmp_path / "audit.db"
    process = _start(plan, out, db)
    _wait_for(lambda: any((f / "predictions.csv").exists() for f in _run_folders(out)), process, "predictions.csv")
    (folder,) = _run_folders(out)
    assert (folder / "model.safetensors").exists()
    assert not (folder / "evidence.json").exists(), "the checks ended before the signal"
    process.send_signal(signal.SIGTERM)
    _assert_nothing_left(process, signal.SIGTERM, out, db)


def _save_then(store, action):
    """Make ``store.save`` write every row of the run inside its transaction, then call ``action``."""
    from govssl.store import _ledger

    real_append = _ledger.append

    def append(conn, rows):
        real_append(conn, rows)
        action()

    return append


def test_interrupted_save__rolls_back(adult_csvs, write_plan, tmp_path, monkeypatch):
    from govssl.store import _ledger

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")

    def interrupt():
        raise Terminated(signal.SIGTERM)

    monkeypatch.setattr(_ledger, "append", _save_then(store, interrupt))
    with pytest.raises(Terminated):
        run_audit(_plan(adult_csvs, write_plan), store=store, out_root=tmp_path / "out")
    assert store.list_runs() == []
    assert store.verify().ok and store.verify().entries == 0
    assert _run_folders(tmp_path / "out") == []


def test_signal_during_save__waits_for_the_commit_and_keeps_the_run(adult_csvs, write_plan, tmp_path, monkeypatch):
    from govssl.store import _ledger

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    monkeypatch.setattr(_ledger, "append", _save_then(store, lambda: os.kill(os.getpid(), signal.SIGTERM)))
    with stop_on_signals(), pytest.raises(Terminated) as stopped:
        run_audit(_plan(adult_csvs, write_plan), store=store, out_root=tmp_path / "out")
    (run,) = store.list_runs()
    assert stopped.value.run_id == run["run_id"] and stopped.value.exit_code == 143
    assert store.verify().ok
    (folder,) = _run_folders(tmp_path / "out")
    assert (folder / "model.safetensors").exists() and (folder / "evidence.json").exists()


def test_stop_on_signals__restores_the_previous_handlers():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    with stop_on_signals():
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        with pytest.raises(Terminated) as stopped:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)  # the handler runs at the next bytecode; never reached
        assert stopped.value.exit_code == 129
    assert {s: signal.getsignal(s) for s in before} == before


def test_stop_on_signals__outside_the_main_thread_changes_nothing():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def worker():
        with stop_on_signals():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [before]


def test_stop_on_signals__a_signal_wrapped_by_python_still_stops_with_its_code():
    # Python turns an exception raised in `__set_name__` (a class body being built, e.g. during an
    # import) into a RuntimeError; a signal landing there must still end as the signal, not as an
    # internal error.
    class Landing:
        def __set_name__(self, owner, name):
            signal.raise_signal(signal.SIGHUP)

    with pytest.raises(Terminated) as stopped:
        with stop_on_signals():
            type("Built", (), {"field": Landing()})
    assert stopped.value.exit_code == 129
    assert isinstance(stopped.value.__cause__, RuntimeError) and "__set_name__" in str(stopped.value.__cause__)


def test_stop_on_signals__an_error_without_a_signal_is_left_as_it_is():
    with pytest.raises(ValueError, match="plain"):
        with stop_on_signals():
            raise ValueError("plain")
    with pytest.raises(ValueError, match="after"):  # a signal of an earlier block is forgotten
        with stop_on_signals():
            raise ValueError("after")
