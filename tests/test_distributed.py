"""Training on two processes (torch.distributed, gloo on 127.0.0.1) through `govssl audit --nproc`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from govssl.store import AuditStore
from tests.conftest import REPO, fast_plan_data, run_cli


def _demo_plan(write_plan, *, pretrain_epochs: int = 1, finetune_epochs: int = 10) -> Path:
    """audits/adult-income.yaml (DP, 32,561 rows, VIME pretraining, private temperature) with
    fewer epochs and the performance check only."""
    data = yaml.safe_load((REPO / "audits" / "adult-income.yaml").read_text(encoding="utf-8"))
    data["dataset"].pop("datasheet")
    data["training"]["pretrain"]["epochs"] = pretrain_epochs
    data["training"]["finetune"]["epochs"] = finetune_epochs
    data["training"]["baseline"] = False
    data["checks"] = {"performance": {"n_boot": 100}}
    data["policy"] = str(REPO / "policies" / "default.yaml")
    return write_plan(data, "demo.yaml")


def _audit(capsys, plan: Path, tmp_path: Path, *extra: str) -> dict:
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    code, out, err = run_cli(capsys, "audit", str(plan), "--out", str(tmp_path / "out"), "--db", db, "--json", *extra)
    assert code in (0, 1), err
    run = json.loads(out)
    code, out, err = run_cli(capsys, "show", run["run_id"], "--db", db, "--json")
    assert code == 0, err
    return json.loads(out)


def _accuracy(run: dict) -> float:
    (value,) = [m["value"] for r in run["checks"] for m in r["measurements"]
                if r["check"] == "performance" and m["metric"] == "accuracy" and not m["subject"]]
    return value


@pytest.mark.slow
def test_dp_on_two_processes__same_epsilon_and_accuracy_within_a_point(capsys, write_plan, tmp_path):
    plan = _demo_plan(write_plan)
    one = _audit(capsys, plan, tmp_path)
    two = _audit(capsys, plan, tmp_path, "--nproc", "2")
    dp_one, dp_two = one["training"]["dp"], two["training"]["dp"]
    # the accountant saw the same phases: sampling rate, noise and steps; so the same epsilon
    assert dp_two["history"] == dp_one["history"]
    assert dp_two["phases"] == dp_one["phases"]
    assert dp_two["epsilon"] == dp_one["epsilon"] <= 3.0
    assert abs(_accuracy(two) - _accuracy(one)) <= 0.01, (_accuracy(one), _accuracy(two))
    assert _accuracy(one) > 0.78  # a model that learned something, not the majority class (0.76)
    # the chain holds the world size and the backend
    assert one["training"]["distributed"]["world_size"] == 1
    assert two["training"]["distributed"]["world_size"] == 2
    assert two["training"]["distributed"]["backend"] == "gloo"
    assert two["training"]["model_sha256"] != one["training"]["model_sha256"]  # other draws, other weights
    code, _, err = run_cli(capsys, "verify", "--db", f"sqlite:///{tmp_path / 'audit.db'}")
    assert code == 0, err


@pytest.mark.slow
def test_without_dp__plan_key_trains_two_processes_deterministically(capsys, adult_csvs, write_plan, tmp_path):
    data = fast_plan_data(*adult_csvs)
    one = _audit(capsys, write_plan(data, "one.yaml"), tmp_path)
    data["training"]["distributed"] = {"nproc": 2}
    plan = write_plan(data, "two.yaml")
    two = _audit(capsys, plan, tmp_path)
    again = _audit(capsys, plan, tmp_path)
    assert two["training"]["distributed"]["world_size"] == 2
    assert abs(_accuracy(two) - _accuracy(one)) <= 0.01, (_accuracy(one), _accuracy(two))
    # seeded per rank: the same plan on the same number of processes gives the same weights
    assert again["training"]["model_sha256"] == two["training"]["model_sha256"]
    assert again["training"]["torch_threads"] == two["training"]["torch_threads"] == 1


def test_nproc_out_of_range__exit_2_naming_the_key(capsys, adult_csvs, write_plan, tmp_path):
    data = fast_plan_data(*adult_csvs)
    data["training"]["distributed"] = {"nproc": 0}
    code, _, err = run_cli(capsys, "audit", str(write_plan(data)), "--out", str(tmp_path / "out"))
    assert code == 2 and "training.distributed.nproc" in err, err
    data["training"]["distributed"] = {"nproc": 2, "nodes": 2}
    code, _, err = run_cli(capsys, "audit", str(write_plan(data)), "--out", str(tmp_path / "out"))
    assert code == 2 and "training.distributed.nodes" in err, err
    code, _, err = run_cli(capsys, "audit", str(write_plan(fast_plan_data(*adult_csvs))), "--nproc", "0")
    assert code == 2 and "--nproc" in err, err


def test_more_processes_than_labelled_rows__exit_2_nothing_left(capsys, adult_csvs, write_plan, tmp_path):
    data = fast_plan_data(*adult_csvs)
    data["training"]["finetune"]["label_fraction"] = 0.001  # 4 labelled rows of 4,000
    db = tmp_path / "audit.db"
    code, _, err = run_cli(capsys, "audit", str(write_plan(data)), "--out", str(tmp_path / "out"),
                           "--db", f"sqlite:///{db}", "--nproc", "64")
    assert code == 2 and "training.distributed.nproc: 64 processes for 4 labelled rows" in err, err
    assert not any((tmp_path / "out").iterdir())
    assert AuditStore(f"sqlite:///{db}").list_runs() == []


@pytest.mark.slow
def test_input_error_found_by_the_processes__exit_2(capsys, adult_csvs, write_plan, tmp_path):
    # a fixed noise of 0 is refused before training; here each training process finds it
    data = fast_plan_data(*adult_csvs, dp=True)
    data["training"]["pretrain"] = {"method": "none"}
    data["training"]["calibration"] = {"method": "none"}
    data["training"]["dp"]["noise_multiplier"] = 0.0
    code, _, err = run_cli(capsys, "audit", str(write_plan(data)), "--out", str(tmp_path / "out"),
                           "--db", f"sqlite:///{tmp_path / 'audit.db'}", "--nproc", "2")
    assert code == 2 and "training.dp.noise_multiplier" in err, err
    assert not any((tmp_path / "out").iterdir())


# ---------------------------------------------------------------- a process killed mid-run


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc)."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(kids)
            frontier.extend(kids)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_two_process_audit(adult_csvs, write_plan, tmp_path):
    data = fast_plan_data(*adult_csvs)
    data["training"]["finetune"]["epochs"] = 200  # training outlasts the wait below
    out, db = tmp_path / "out", tmp_path / "audit.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "govssl.cli", "audit", str(write_plan(data)), "--out", str(out),
         "--db", f"sqlite:///{db}", "--nproc", "2", "-q"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 300
    workers: list[int] = []
    while True:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no training process started"
        workers = [p for p in _children(process.pid) if "spawn_main" in _cmdline(p)]
        # both processes have loaded torch and the data and are training
        if len(workers) == 2 and all(_cpu_seconds(p) > 6 for p in workers):
            break
        time.sleep(0.2)
    return process, workers, out, db


def _assert_nothing_left(process, descendants, out: Path, db: Path) -> str:
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    if db.exists():
        store = AuditStore(f"sqlite:///{db}")
        assert store.list_runs() == []
        assert store.verify().ok
    assert not out.exists() or list(out.iterdir()) == []
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in descendants) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in descendants if _alive(p)], "a training process outlived the audit"
    assert "Traceback" not in stderr
    return stderr


@pytest.mark.slow
def test_training_process_killed__exit_4_nothing_stored_no_folder(adult_csvs, write_plan, tmp_path):
    process, workers, out, db = _start_two_process_audit(adult_csvs, write_plan, tmp_path)
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    assert not (folder / "model.safetensors").exists(), "training ended before the kill"
    descendants = _children(process.pid)
    os.kill(workers[-1], signal.SIGKILL)
    stderr = _assert_nothing_left(process, descendants, out, db)
    assert process.returncode == 4, stderr
    assert f"(pid {workers[-1]}) was killed by SIGKILL" in stderr, stderr


@pytest.mark.slow
def test_sigterm_to_the_audit_during_distributed_training__stops_every_process(adult_csvs, write_plan, tmp_path):
    process, _, out, db = _start_two_process_audit(adult_csvs, write_plan, tmp_path)
    descendants = _children(process.pid)
    process.send_signal(signal.SIGTERM)
    stderr = _assert_nothing_left(process, descendants, out, db)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM; nothing of the run was kept" in stderr, stderr


def test_nproc_under_torchrun__exit_2(capsys, adult_csvs, write_plan, tmp_path, monkeypatch):
    for name, value in {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "4", "RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    code, _, err = run_cli(capsys, "audit", str(write_plan(fast_plan_data(*adult_csvs))), "--out", str(tmp_path / "out"),
                           "--nproc", "2")
    assert code == 2 and "--nproc: torchrun started 4 processes already" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_nodes_started_by_torchrun__one_run_with_world_size_2(adult_csvs, write_plan, tmp_path):
    """Two torchrun agents (two "machines" on 127.0.0.1), one process each, one shared store."""
    data = fast_plan_data(*adult_csvs, dp=True)
    data["training"]["pretrain"] = {"method": "vime", "epochs": 1, "batch_size": 256}
    plan = write_plan(data)
    out, db = tmp_path / "out", tmp_path / "audit.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "govssl-test",
               "--local-addr", "127.0.0.1", "--log-dir", str(tmp_path / "torchrun-logs"), "-m", "govssl.cli", "audit", str(plan), "--out", str(out),
               "--db", f"sqlite:///{db}", "-q"]
    nodes = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    stderr = "\n".join(e for _, e in outputs)
    assert "rank 1 of 2: training done; rank 0 runs the checks and stores the run" in stderr, stderr
    (run,) = AuditStore(f"sqlite:///{db}").list_runs()
    assert AuditStore(f"sqlite:///{db}").verify().ok
    assert [p.name for p in out.iterdir()] == [run["run_id"]]
    (stored,), _ = AuditStore(f"sqlite:///{db}").read_runs([run["run_id"]])
    distributed = stored.training.distributed
    assert distributed["world_size"] == 2 and distributed["nodes"] == 2, distributed
    assert distributed["launcher"].startswith("torchrun") and distributed["backend"] == "gloo"
    # the accountant's history is the one-process one: epsilon within the plan's target
    # (the CSV's category levels are not declared: their private selection is the first phase)
    phases = [p["phase"] for p in stored.training.dp["phases"]]
    assert stored.training.dp["epsilon"] <= 3.0 and phases[:2] == ["category levels", "pretrain"]


def test_nproc_past_the_bound__exit_2(capsys, adult_csvs, write_plan):
    code, _, err = run_cli(capsys, "audit", str(write_plan(fast_plan_data(*adult_csvs))), "--nproc", "1025")
    assert code == 2 and "--nproc" in err and "1,024" in err, err


def _reduce_in_group(rank: int, port: int, out: str) -> None:
    """One of two gloo processes: the bucketed all-reduce and Opacus's per-tensor one, on the same
    gradients (each rank's own); its own gradients and both results are written to ``out.RANK``."""
    import torch

    from govssl.train._distributed import bucketed_dp_optimizer
    from opacus.optimizers import DistributedDPOptimizerFastGradientClipping

    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        found = {}
        for name, cls in (("bucketed", bucketed_dp_optimizer()), ("opacus", DistributedDPOptimizerFastGradientClipping)):
            torch.manual_seed(0)
            params = [torch.nn.Parameter(torch.randn(shape)) for shape in ((7, 5), (7,), (3, 7), (3,))]
            generator = torch.Generator().manual_seed(100 + rank)
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator)
            found["own"] = [p.grad.tolist() for p in params]
            optimizer = cls(torch.optim.SGD(params, lr=0.1), noise_multiplier=1.0, max_grad_norm=1.0,
                            expected_batch_size=4, loss_reduction="mean")
            optimizer.reduce_gradients()
            found[name] = [p.grad.tolist() for p in params]
        Path(f"{out}.{rank}").write_text(json.dumps(found), encoding="utf-8")
    finally:
        torch.distributed.destroy_process_group()


def test_bucketed_dp_all_reduce__same_sums_as_opacus_per_tensor(tmp_path):
    import multiprocessing

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "grads.json"
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=_reduce_in_group, args=(rank, port, str(out))) for rank in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0]
    import numpy as np

    first, second = (json.loads(Path(f"{out}.{rank}").read_text(encoding="utf-8")) for rank in range(2))
    for found in (first, second):
        assert found["bucketed"] == found["opacus"]  # exactly: the same two summands per value
    for k in range(4):  # the mean of the two ranks' gradients ("mean" reduction)
        np.testing.assert_allclose(first["bucketed"][k], (np.array(first["own"][k]) + second["own"][k]) / 2, rtol=1e-6)
