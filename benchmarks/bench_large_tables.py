"""The per-batch costs that decide training time and memory on large tables, each against the way
it was done before, measured in one run.

1. Poisson batches (``govssl.train._clip.PoissonBatches``): one uniform number per row and step
   (Opacus's ``UniformWithReplacementSampler``, used up to 100,000 rows) against a Binomial size
   and then that many distinct rows (past it), at 750,000 and 7.5 million rows, a batch of about
   1,024 rows each: milliseconds per batch and the ratio.
2. Random batch rows of an out-of-core table (``govssl.data.EncodedRows``): read through the
   memory mapping against read with ``preadv``, from a float32 matrix file of 107 columns (near
   the 119 of the encoded Adult in bench_scale.py's plan): milliseconds per 1,024-row batch, and the mapped file pages in the
   process's resident set after the batches (``RssFile`` in /proc/self/status, Linux only); the
   seconds to read three quarters of the rows, sorted, in blocks (one call per run); and the
   seconds to read every row in consecutive 8,192-row blocks, through the mapping and by
   ``preadv``.
3. The gradient all-reduce of DP training on two processes (gloo, 127.0.0.1): one all-reduce per
   parameter tensor of the demo classifier (Opacus's ``DistributedDPOptimizer``) against one of
   the same values flattened (``govssl.train._distributed.bucketed_dp_optimizer``): milliseconds
   per step.

    python benchmarks/bench_large_tables.py [--matrix-rows 2500000] [--batches 300]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

WIDTH = 107  # columns of the matrix (the encoded Adult of the benchmark's plan has 119)
LAYERS = ((256, WIDTH), (256,), (256, 256), (256,), (2, 256), (2,))  # the demo classifier's tensors


def sampling(batches: int) -> None:
    import torch

    from govssl.train._clip import PoissonBatches

    print("Poisson batches of about 1,024 rows (ms per batch)")
    for n in (750_000, 7_500_000):
        times = {}
        for by_subset in (False, True):
            draws = PoissonBatches(n, 1024 / n, batches, torch.Generator().manual_seed(0))
            draws.by_subset = by_subset
            started = time.perf_counter()
            sizes = [len(b) for b in draws]
            times[by_subset] = (time.perf_counter() - started) / batches * 1e3
            assert abs(np.mean(sizes) - 1024) < 10 * np.sqrt(1024 / batches)
        print(f"  {n:>9,} rows: one number per row {times[False]:7.2f}   size then subset {times[True]:5.2f}"
              f"   ratio {times[False] / times[True]:6.1f}")


def _rss_file_mb() -> float:
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reads(rows: int, batches: int) -> None:
    import mmap

    from govssl.data import EncodedRows

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "matrix.f32"
        block = np.ones((100_000, WIDTH), dtype=np.float32)
        with open(path, "wb") as fh:
            for start in range(0, rows, len(block)):
                block[: min(len(block), rows - start)].tofile(fh)
        matrix = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, WIDTH))
        print(f"Random 1,024-row batches of a {path.stat().st_size / 2**30:.2f} GB matrix file "
              f"(ms per batch; mapped file pages in the resident set after {batches} batches)")
        rng = np.random.default_rng(0)
        started, before = time.perf_counter(), _rss_file_mb()
        for _ in range(batches):
            np.array(matrix[np.sort(rng.integers(0, rows, 1024))])
        mapped = ((time.perf_counter() - started) / batches * 1e3, _rss_file_mb() - before)
        matrix._mmap.madvise(mmap.MADV_DONTNEED)
        encoded = EncodedRows(matrix)
        started, before = time.perf_counter(), _rss_file_mb()
        for _ in range(batches):
            encoded[np.sort(rng.integers(0, rows, 1024))]
        read = ((time.perf_counter() - started) / batches * 1e3, _rss_file_mb() - before)
        print(f"  through the mapping: {mapped[0]:.2f} ms, {mapped[1]:,.0f} MB mapped")
        print(f"  preadv (EncodedRows): {read[0]:.2f} ms, {read[1]:,.0f} MB mapped")
        # the sorted rows of a class (three quarters of them), in blocks of 65,536 as the poisoning
        # check scores its triggered test rows: one call per run of consecutive rows
        dense = np.flatnonzero(rng.random(rows) < 0.75)
        started = time.perf_counter()
        for start in range(0, len(dense), 65_536):
            encoded[dense[start:start + 65_536]]
        runs = int(np.sum(np.diff(dense) != 1)) + 1
        print(f"  {len(dense):,} sorted rows (three quarters) in 65,536-row blocks: "
              f"{time.perf_counter() - started:.2f} s by preadv, {runs:,} calls (one per run of consecutive rows)")
        # every row in consecutive 8,192-row blocks, as predictions score the test split
        matrix._mmap.madvise(mmap.MADV_DONTNEED)
        started = time.perf_counter()
        for start in range(0, rows, 8192):
            np.array(matrix[start:start + 8192])
        through_mapping = time.perf_counter() - started
        matrix._mmap.madvise(mmap.MADV_DONTNEED)
        started = time.perf_counter()
        for start in range(0, rows, 8192):
            encoded[start:start + 8192]
        print(f"  every row in 8,192-row blocks: {through_mapping:.2f} s through the mapping, "
              f"{time.perf_counter() - started:.2f} s by preadv (one call per block)")
        del encoded, matrix


def _reduce(rank: int, port: int, steps: int, out) -> None:
    import torch

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        tensors = [torch.randn(shape) for shape in LAYERS]
        flat = torch.cat([t.reshape(-1) for t in tensors])
        found = {}
        for name, work in (("per tensor", lambda: [torch.distributed.all_reduce(t) for t in tensors]),
                           ("flattened", lambda: torch.distributed.all_reduce(flat))):
            work()
            torch.distributed.barrier()
            started = time.perf_counter()
            for _ in range(steps):
                work()
            found[name] = (time.perf_counter() - started) / steps * 1e3
        if rank == 0:
            out.put(found)
    finally:
        torch.distributed.destroy_process_group()


def all_reduce(steps: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spawn = multiprocessing.get_context("spawn")
    out = spawn.Queue()
    processes = [spawn.Process(target=_reduce, args=(rank, port, steps, out)) for rank in range(2)]
    for p in processes:
        p.start()
    found = out.get(timeout=600)
    for p in processes:
        p.join()
    n = sum(int(np.prod(shape)) for shape in LAYERS)
    print(f"Gradient all-reduce of the demo classifier ({n:,} values, {len(LAYERS)} tensors) on 2 processes, gloo")
    print(f"  one per tensor {found['per tensor']:.2f} ms   flattened {found['flattened']:.2f} ms   "
          f"ratio {found['per tensor'] / found['flattened']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix-rows", type=int, default=2_500_000, help="rows of the matrix file (107 columns)")
    parser.add_argument("--batches", type=int, default=300, help="batches (or all-reduce steps) timed per setting")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    sampling(args.batches)
    reads(args.matrix_rows, args.batches)
    all_reduce(args.batches)


if __name__ == "__main__":
    main()
