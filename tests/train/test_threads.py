"""The weights do not depend on the process's thread count: training fixes torch's intra-op threads.

On the fast plan, 1 and 2 threads happen to give the same weights, 4 threads others (before
the count was fixed); so the comparisons here use 1 and 4 threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from govssl.data import load
from govssl.errors import ConfigError
from govssl.plan import AuditPlan
from govssl.progress import NullProgress
from govssl.store import AuditStore
from govssl.train import TRAIN_THREADS, fit
from tests.conftest import REPO, fast_plan_data

# `govssl` after fixing torch's thread counts (intra-op and inter-op) from Python
WRAPPER = ("import sys, torch; torch.set_num_threads({n}); torch.set_num_interop_threads({n}); "
           "from govssl.cli import main; main(sys.argv[1:])")


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_fit__same_weights_at_any_torch_thread_count_and_the_count_restored(adult_csvs, tmp_path, restore_threads):
    plan = AuditPlan.model_validate(fast_plan_data(*adult_csvs))
    data = load(plan)
    records = {}
    for threads in (1, 4):
        torch.set_num_threads(threads)
        records[threads] = fit(plan, data, tmp_path / str(threads), NullProgress()).record
        assert torch.get_num_threads() == threads  # the caller's count is back
    assert records[1].model_sha256 == records[4].model_sha256
    assert records[1].torch_threads == records[4].torch_threads == TRAIN_THREADS == 1


def test_fit__restores_the_thread_count_when_training_fails(adult_csvs, tmp_path, restore_threads):
    data = fast_plan_data(*adult_csvs)
    data["training"]["pretrain"]["method"] = "simclr"  # refused by the trainer: the data are tabular
    plan = AuditPlan.model_validate(data)
    torch.set_num_threads(3)
    with pytest.raises(ConfigError, match="does not apply to tabular data"):
        fit(plan, load(plan), tmp_path, NullProgress())
    assert torch.get_num_threads() == 3


def audit_in_subprocess(plan: Path, folder: Path, threads: int, *, from_python: bool) -> dict:
    """``govssl audit PLAN --json`` in a fresh process whose OpenMP and MKL thread counts (and, with
    ``from_python``, torch's intra-op and inter-op counts) are ``threads``; the run as JSON."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    head = ["-c", WRAPPER.format(n=threads)] if from_python else ["-m", "govssl.cli"]
    done = subprocess.run(
        [sys.executable, *head, "audit", str(plan), "--out", str(folder / "out"),
         "--db", f"sqlite:///{folder / 'audit.db'}", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_audit__same_model_sha256_on_1_and_4_threads(adult_csvs, write_plan, tmp_path):
    plan = write_plan(fast_plan_data(*adult_csvs))
    one = audit_in_subprocess(plan, tmp_path / "one", 1, from_python=False)
    four = audit_in_subprocess(plan, tmp_path / "four", 4, from_python=True)
    assert one["training"]["model_sha256"] == four["training"]["model_sha256"]
    # the count is in the evidence, the store and the model card
    for run, folder in ((one, tmp_path / "one"), (four, tmp_path / "four")):
        assert run["training"]["torch_threads"] == 1
        assert AuditStore(f"sqlite:///{folder / 'audit.db'}").load_run(run["run_id"]).training.torch_threads == 1
        card = (folder / "out" / run["run_id"] / "model_card.md").read_text(encoding="utf-8")
        assert "torch threads: 1;" in card
