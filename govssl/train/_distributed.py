"""Training on several processes under ``torch.distributed``, started by torch's elastic launcher.

``govssl audit PLAN --nproc N`` (or ``training.distributed.nproc: N``) trains on ``N`` processes
of this machine, started by :func:`torch.distributed.launcher.api.elastic_launch` as ``torchrun``
starts them: a c10d rendezvous on a free 127.0.0.1 port, the gloo backend (the trainer computes
on the CPU), no restarts. Every process loads the plan's data itself (no row crosses a process
boundary), checks that it holds the same rows as the audit, and runs the same training; the
heavy loops are split between them:

- without DP, each process reads its shard of each epoch (torch's ``DistributedSampler``) in
  batches of ``batch_size / N`` rows, and ``DistributedDataParallel`` averages the gradients, so
  a step sees ``batch_size`` rows as on one process;
- under DP, each process Poisson-samples the rows of its shard at the one-process rate (the
  union is a Poisson sample of all rows at that rate), clips per example, and Opacus's
  distributed optimizer sums the clipped gradients of all processes, adds the noise once (on rank
  0) and divides by the one-process expected batch size; the model is wrapped in Opacus's
  ``DPDDP``. The accountant sees the same sampling rate, noise and steps as on one process, so
  epsilon is the one-process figure.

The small phases (the temperature, a few hundred held-out rows) run whole on every process, with
the same seeds, so every process ends with the same model. Rank 0 writes the weights file into the
run folder and hands back the weights and the training record; the audit's checks then run in
the audit's own process, as after training on one process.

A process that fails or is killed ends the launch: the launcher stops the others, and the audit
fails (exit 4) with nothing stored and no run folder left.

Across machines, ``torchrun`` starts ``govssl audit`` on every process instead: the processes
train together in the same way, rank 0 runs the rest of the audit alone, and the other ranks
exit once trained (:func:`fit_under_torchrun`, :func:`train_under_torchrun`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["Dist", "context", "rank_seed", "generator", "ShardedBatches", "ShardedPoisson", "wrap_ddp", "unwrap",
           "epoch_mean", "record", "fingerprint", "fit_distributed", "bucketed_dp_optimizer", "BACKEND"]

# The trainer computes on the CPU, where gloo is torch's collective backend (NCCL moves CUDA tensors only).
BACKEND = "gloo"
LAUNCHERS = {"govssl": "govssl --nproc: torch.distributed.elastic (elastic_launch, c10d rendezvous on 127.0.0.1)",
             "torchrun": "torchrun (govssl audit started on every process; rank 0 audits and stores)"}
_launcher = "govssl"  # which started this process's group (set before training in it)
# Rank r > 0 draws its Poisson samples and augmentations from seed + r * RANK_SEED_STEP: rank 0
# keeps the one-process stream, and no rank's stream meets the seed + 1, + 3 of other draws.
RANK_SEED_STEP = 1_000_003
_LAUNCH_FOLDER = ".launch"  # in the run folder: the processes' output and error files, removed after


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int


def context() -> Dist | None:
    """The process group this process trains in, or None when training runs on one process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size())


def rank_seed(seed: int) -> int:
    ctx = context()
    return seed if ctx is None or ctx.rank == 0 else seed + RANK_SEED_STEP * ctx.rank


def generator(seed: int) -> torch.Generator:
    """A generator for this process's random draws: ``seed`` on one process and on rank 0."""
    return torch.Generator().manual_seed(rank_seed(seed))


class ShardedBatches:
    """Without DP under ``torch.distributed``: each call is one epoch of this rank's shard, as
    ``DistributedSampler`` deals it (shuffled with ``seed`` and the epoch, padded so that every rank
    has as many rows), in batches of ``ceil(batch_size / world size)`` indices. Every rank gets
    the same number of batches of the same sizes, so each step's gradient all-reduce meets."""

    def __init__(self, n: int, batch_size: int, seed: int):
        from torch.utils.data.distributed import DistributedSampler

        ctx = context()
        self.sampler = DistributedSampler(range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                          seed=seed, drop_last=False)
        self.batch_size = max(1, -(-batch_size // ctx.world_size))
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __call__(self):
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        order = torch.as_tensor(list(self.sampler), dtype=torch.long)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            if len(idx) >= 2:  # as the one-process batches: the same decision on every rank
                yield idx


class ShardedPoisson:
    """Under DP and ``torch.distributed``: rank r's rows are r, r + N, r + 2N, ...; each joins
    each batch independently with the one-process ``sample_rate``, so the batches of all ranks
    together are a Poisson sample of all the rows at that rate. Yields indices into all the rows."""

    def __init__(self, n: int, sample_rate: float, steps: int, generator: torch.Generator):
        from govssl.train._clip import PoissonBatches

        ctx = context()
        self.shard = torch.arange(ctx.rank, n, ctx.world_size)
        self.sample_rate = sample_rate
        self._local = PoissonBatches(len(self.shard), sample_rate, steps, generator)

    def __len__(self) -> int:
        return len(self._local)

    def __iter__(self):
        for idx in self._local:
            yield self.shard[idx]


def bucketed_dp_optimizer():
    """Opacus's distributed DP optimizer (``DistributedDPOptimizerFastGradientClipping``), its
    gradients summed across processes in one all-reduce per step instead of one per parameter
    tensor. The sums are the same; the count is what costs: over gloo on 127.0.0.1 an all-reduce
    of the demo model's six tensors took 6.5 ms a step and one of the same values flattened
    2.3 ms, against some 7 ms of computing a step's half batch, so per-tensor all-reduces made two
    processes slower than one. (DistributedDataParallel, used without DP, buckets its gradients
    the same way; ``benchmarks/bench_large_tables.py`` times both reductions.)"""
    from opacus.optimizers import DistributedDPOptimizerFastGradientClipping

    class BucketedDistributedDPOptimizer(DistributedDPOptimizerFastGradientClipping):
        def reduce_gradients(self):
            grads = [p.grad for p in self.params if p.requires_grad]
            if not grads:
                return
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
            if self.loss_reduction == "mean":
                flat /= self.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    return BucketedDistributedDPOptimizer


def wrap_ddp(module: nn.Module) -> nn.Module:
    """``module`` in ``DistributedDataParallel`` under ``torch.distributed``, else itself."""
    if context() is None:
        return module
    return nn.parallel.DistributedDataParallel(module)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP or DPDDP wrapper (the trained weights, without the "module." prefix)."""
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

    if isinstance(module, (nn.parallel.DistributedDataParallel, DPDDP)):
        return module.module
    return module


def epoch_mean(total: float, count: int) -> float:
    """An epoch's mean loss over the rows of every rank (the losses recorded in the history)."""
    ctx = context()
    if ctx is None:
        return total / max(count, 1)
    sums = torch.tensor([total, float(count)], dtype=torch.float64)
    torch.distributed.all_reduce(sums)
    return float(sums[0] / max(float(sums[1]), 1.0))


def record() -> dict:
    """The training record's ``distributed`` entry for this process's training."""
    ctx = context()
    if ctx is None:
        return {"world_size": 1, "backend": None, "launcher": None,
                "note": "trained in the audit's own process"}
    return {
        "world_size": ctx.world_size,
        "backend": torch.distributed.get_backend(),
        "launcher": LAUNCHERS[_launcher],
        "nodes": int(os.environ.get("GROUP_WORLD_SIZE", "0")) or None,
        "sharding": ("without DP: DistributedSampler shards, batch_size / world size rows per process per step, "
                     "gradients averaged by DistributedDataParallel; under DP: each process Poisson-samples its "
                     "shard at the one-process rate, Opacus DPDDP with its distributed optimizer (noise added "
                     "once, on rank 0)"),
        "rank_seeds": f"rank r draws from seed + r * {RANK_SEED_STEP}",
    }


def fingerprint(data) -> str:
    """sha256 of the encoded training rows and labels: every process must train on the audit's rows."""
    digest = hashlib.sha256()
    for array in (data.X_train, data.y_train):
        array = np.ascontiguousarray(array)
        digest.update(str((array.dtype.str, array.shape)).encode())
        flat = array.reshape(-1)
        step = max(1, (1 << 24) // max(array.itemsize, 1))
        for start in range(0, len(flat), step):
            digest.update(flat[start : start + step].tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- the processes


def _train_in_group(plan, dataset, public_X, folder: Path, progress, expected: str | None = None):
    """Train in the process group (already joined) on this process's ``dataset``, after checking
    that every rank holds the same training rows (and ``expected``'s, when given)."""
    from govssl.errors import IntegrityError
    from govssl.train._trainer import fixed_threads, _fit

    rank = torch.distributed.get_rank()
    mine = fingerprint(dataset)
    everyone = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everyone, mine)
    if any(f != everyone[0] for f in everyone) or (expected is not None and mine != expected):
        raise IntegrityError(f"{plan.source_path or 'the plan'}: the training processes read different training "
                             f"rows (ranks {', '.join(str(r) for r, f in enumerate(everyone) if f != everyone[0]) or rank} "
                             "differ from rank 0 or from the rows the audit verified): did the data file change, "
                             "or differ between machines?")
    folder.mkdir(parents=True, exist_ok=True)
    with fixed_threads() as threads:
        return _fit(plan, dataset, folder, progress, public_X, threads)


def _worker(plan, out_dir: str, expected: str):
    """One training process (the launcher's entry point). Returns, on rank 0, what the audit
    needs of the training; ``{"error": ...}`` for bad input found by every rank alike."""
    from govssl import data as data_module
    from govssl.errors import GovsslError
    from govssl.progress import NullProgress

    rank = int(os.environ["RANK"])
    run_folder = Path(out_dir)
    launch = run_folder / _LAUNCH_FOLDER
    torch.distributed.init_process_group(BACKEND)
    own = run_folder if rank == 0 else launch / f"rank{rank}"  # other ranks' weights file: removed below
    try:
        try:
            dataset = data_module.load(plan)
            public_X = data_module.load_public(plan, dataset)
            result = _train_in_group(plan, dataset, public_X, own, NullProgress(), expected)
        except GovsslError as exc:  # raised before any collective, by every rank alike
            return {"error": (type(exc).__name__, str(exc))}
        except BaseException:
            (launch / f"rank{rank}.error").write_text(traceback.format_exc(), encoding="utf-8")
            raise
        if rank != 0:
            shutil.rmtree(own, ignore_errors=True)
            return None
        return {
            "state": {k: v.detach().numpy().copy() for k, v in result.model.state_dict().items()},
            "baseline": (None if result.baseline is None else
                         {k: v.detach().numpy().copy() for k, v in result.baseline.state_dict().items()}),
            "architecture": dict(result.architecture),
            "record": result.record,
            "labelled_rows": result.labelled_rows,
            "calibration_rows": result.calibration_rows,
        }
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _launcher_side_effects():
    """Put back what torch's launcher changes in this process: the handlers of the stop signals
    (it installs its own, which stop the workers and raise SignalException), an environment
    variable, and the level of its logger (its failure reports repeat what the audit reports)."""
    names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
    handlers = {}
    for name in names:
        if hasattr(signal, name):
            try:
                handlers[getattr(signal, name)] = signal.getsignal(getattr(signal, name))
            except ValueError:
                pass
    env = os.environ.get("TORCHELASTIC_SIGNALS_TO_HANDLE")
    log = logging.getLogger("torch.distributed.elastic")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)
        if env is None:
            os.environ.pop("TORCHELASTIC_SIGNALS_TO_HANDLE", None)
        else:
            os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = env
        for signum, handler in handlers.items():
            try:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            except ValueError:  # not the main thread: nothing was installed
                pass


def _failure_message(exc, launch: Path) -> tuple[str, str | None]:
    """(one line per failed rank, the first rank's traceback if it wrote one)."""
    lines, details = [], None
    for rank, failure in sorted(exc.failures.items()):
        if failure.exitcode < 0:
            what = f"was killed by {failure.signal_name()}"
        else:
            what = f"failed with exit code {failure.exitcode}"
        error = launch / f"rank{rank}.error"
        if error.is_file():
            text = error.read_text(encoding="utf-8", errors="replace")
            details = details or text
            last = text.strip().splitlines()[-1] if text.strip() else ""
            what += f": {last}"
        lines.append(f"training process rank {rank} (pid {failure.pid}) {what}")
    return "; ".join(lines), details


def fit_distributed(plan, data, out_dir: Path, progress, nproc: int):
    """Train the plan's model on ``nproc`` processes of this machine; the same result as
    :func:`govssl.train.fit` (the weights file in ``out_dir``, the record, the plain modules)."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from govssl import errors
    from govssl.train._trainer import TrainResult
    from govssl.train.models import Architecture, build_classifier

    out_dir = Path(out_dir)
    launch = out_dir / _LAUNCH_FOLDER
    launch.mkdir(parents=True, exist_ok=True)
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"govssl-{uuid.uuid4().hex}",
        rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{_free_port()}", local_addr="127.0.0.1",
        max_restarts=0, monitor_interval=0.1, start_method="spawn", shutdown_timeout=10,
        signals_to_handle="SIGTERM,SIGINT,SIGHUP",
        # the processes' output goes to files in the run folder, not into the audit's output
        logs_specs=DefaultLogsSpecs(log_dir=str(launch / "logs"), redirects=Std.ALL),
    )
    try:
        with progress.task(f"training on {nproc} processes (torch.distributed, {BACKEND})", None):
            with _launcher_side_effects():
                try:
                    returned = elastic_launch(config, _worker)(plan, str(out_dir), fingerprint(data))
                except SignalException as exc:
                    from govssl.audit import Terminated

                    if exc.sigval == signal.SIGINT:
                        raise KeyboardInterrupt from None
                    raise Terminated(int(exc.sigval)) from None
                except ChildFailedError as exc:
                    message, details = _failure_message(exc, launch)
                    message = f"distributed training failed: {message}"
                    if details is None:  # killed, or ended without a Python exception: exit 4, no log
                        raise errors.GovsslError(message + "; the audit stops") from None
                    failure = RuntimeError(message)  # a bug in a training process: logged as one
                    failure.add_note("the training process's traceback:\n" + details)
                    raise failure from None
    finally:
        shutil.rmtree(launch, ignore_errors=True)
    result = returned[0]
    failed = [r for r in returned.values() if isinstance(r, dict) and "error" in r]
    if failed:
        name, message = failed[0]["error"]
        raise getattr(errors, name, errors.GovsslError)(message)
    arch = Architecture(result["architecture"])

    def module(state):
        if state is None:
            return None
        model = build_classifier(arch)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        return model.eval()

    record = result["record"]
    from govssl.records import sha256_file

    if sha256_file(record.model_path) != record.model_sha256:
        raise errors.IntegrityError(f"{record.model_path}: the weights file rank 0 wrote does not match its sha256")
    return TrainResult(model=module(result["state"]), architecture=arch, record=record,
                       labelled_rows=result["labelled_rows"], baseline=module(result["baseline"]),
                       calibration_rows=result["calibration_rows"])


# ---------------------------------------------------------------- started by torchrun


def torchrun_rank() -> tuple[int, int] | None:
    """(rank, world size) when this process is one of several that ``torchrun`` started, else None."""
    world = os.environ.get("WORLD_SIZE", "")
    rank = os.environ.get("RANK", "")
    if os.environ.get("TORCHELASTIC_RUN_ID") and world.isdigit() and int(world) > 1 and rank.isdigit():
        return int(rank), int(world)
    return None


@contextmanager
def _torchrun_group():
    global _launcher
    torch.distributed.init_process_group(BACKEND)  # env://: torchrun set the rendezvous
    _launcher = "torchrun"
    try:
        yield
    finally:
        _launcher = "govssl"
        torch.distributed.destroy_process_group()


def fit_under_torchrun(plan, data, public_X, out_dir: Path, progress):
    """Rank 0 of a ``torchrun`` launch: train with the other ranks (each running
    :func:`train_under_torchrun`), in this process; the audit then goes on here alone."""
    with _torchrun_group():
        return _train_in_group(plan, data, public_X, Path(out_dir), progress)


def train_under_torchrun(plan, out_root: Path | None = None) -> None:
    """A rank other than 0 of a ``torchrun`` launch: load the plan's data, train with the other
    ranks, keep nothing (the weights file goes to a temporary folder, removed after)."""
    import tempfile

    from govssl import data as data_module
    from govssl.progress import NullProgress

    dataset = data_module.load(plan)
    public_X = data_module.load_public(plan, dataset)
    with _torchrun_group(), tempfile.TemporaryDirectory(prefix="govssl-rank-") as folder:
        _train_in_group(plan, dataset, public_X, Path(folder), NullProgress())
