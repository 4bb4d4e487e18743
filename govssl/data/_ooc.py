"""Out-of-core tables: streamed reading, and the encoded features in a cached, memory-mapped file.

A table too large for memory as govssl's in-memory path holds it (the file parsed to Python
strings, then a float32 matrix of its one-hot encoding, train and test) takes this path instead
(``dataset.out_of_core``, see docs/scale.md):

- The CSV is parsed in chunks, its bytes hashed (sha256) as they are parsed, so the file's
  digest in the run's record is the digest of exactly the bytes the audit read, in one pass. A
  Parquet file is read by record batches and hashed in a pass of its own. Text columns are kept
  as pandas categoricals (one small integer per row), numeric columns as numbers: the raw table
  takes some tens of bytes per row instead of some hundreds.
- The encoder is fitted on that table by the same code as in memory (the same numbers, the same
  levels; a categorical column's level counts come from its category codes).
- The encoded float32 features (the training rows, then the test rows) are written once, in
  chunks, to a file in the cache folder, named by a digest of the data file's sha256, the
  encoder and the split; a later audit of the same file with the same encoding maps it instead
  of encoding again. The file and its sidecar are written to temporary names and renamed into
  place, and before reuse the sidecar's size and sha256 are checked against the file: a cache
  file that does not match is encoded again, never trusted.
- :class:`EncodedRows` gives training and the checks the rows they index (a batch, a sample, a
  slice) from the mapped file, and keeps the mapped pages it has read from accumulating in the
  process's resident memory.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from govssl.errors import DataError, IntegrityError

__all__ = ["EncodedRows", "cache_dir", "read_table_streamed", "encoded_rows", "wants_out_of_core",
           "CACHE_ENV", "CHUNK_ROWS"]

CACHE_ENV = "GOVSSL_CACHE_DIR"
CHUNK_ROWS = 250_000  # rows parsed, encoded or written at a time
FORMAT = 1  # of the cache file; part of its key
# Resident mapped pages an EncodedRows lets accumulate before it tells the kernel it no longer
# needs them (they stay in the page cache; only this process's resident set drops them).
RESIDENT_BYTES = 256 * 2**20
# what a page fault at a scattered row may map: a whole large folio of the page cache, up to a
# PMD's 2 MB (benchmarks/bench_large_tables.py: 300 random 1,024-row batches of a 1 GB file mapped
# all of it, 1,021 MB)
FAULT_AROUND_BYTES = 2 * 2**20


def cache_dir() -> Path:
    """Where encoded tables are cached: $GOVSSL_CACHE_DIR, else $XDG_CACHE_HOME/govssl, else
    ~/.cache/govssl."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "govssl"


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


# In memory, a row of a typical table costs some 20 times its bytes in a CSV file (Python strings
# of the text columns, the float32 one-hot matrix of train and test rows, the copies made while
# splitting); a compressed file some 5 times more again.
IN_MEMORY_FACTOR = 20
COMPRESSED_FACTOR = 5


def wants_out_of_core(setting: str, paths: list[Path]) -> bool:
    """Whether the table takes the out-of-core path: ``always``, ``never``, or ``auto``: when the
    estimated in-memory footprint of the files (``IN_MEMORY_FACTOR`` times their size, times
    ``COMPRESSED_FACTOR`` for a compressed CSV; Parquet counts as compressed) passes half of the
    machine's physical memory."""
    if setting in ("always", "never"):
        return setting == "always"
    estimate = 0
    for path in paths:
        try:
            size = path.stat().st_size
        except OSError:
            return False  # the in-memory reader names the problem
        suffix = "".join(path.suffixes[-2:]).lower()
        compressed = suffix.endswith((".gz", ".bz2", ".zip", ".xz", ".zst", ".parquet", ".pq"))
        estimate += size * IN_MEMORY_FACTOR * (COMPRESSED_FACTOR if compressed else 1)
    return estimate > physical_memory() // 2


class _HashingReader:
    """A binary file object that hashes every byte read through it."""

    def __init__(self, fh):
        self._fh = fh
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n=-1):
        data = self._fh.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer):
        n = self._fh.readinto(buffer)
        if n:
            self.digest.update(memoryview(buffer)[:n])
            self.size += n
        return n

    def readable(self):
        return True

    def seekable(self):
        return False

    def finish(self) -> str:
        """Hash what the parser left unread (nothing, normally) and return the hex digest."""
        while True:
            block = self.read(1 << 20)
            if not block:
                return self.digest.hexdigest()

    def __getattr__(self, name):
        return getattr(self._fh, name)


_COMPRESSION = {".tar.gz": "tar", ".tar.bz2": "tar", ".tar.xz": "tar", ".gz": "gzip", ".bz2": "bz2", ".zip": "zip", ".xz": "xz", ".zst": "zstd", ".tar": "tar"}


def compression_of(suffix: str) -> str | None:
    """pandas' name of the compression a file's suffix says (None: plain)."""
    return next((name for end, name in _COMPRESSION.items() if suffix.endswith(end)), None)


def _compact(chunk: pd.DataFrame) -> pd.DataFrame:
    """Text (and boolean) columns as categoricals: one code per row instead of a Python object."""
    for col in chunk.columns:
        if not pd.api.types.is_numeric_dtype(chunk[col]) or pd.api.types.is_bool_dtype(chunk[col]):
            chunk[col] = chunk[col].astype("category")
    return chunk


def _combine(path: Path, chunks: list[pd.DataFrame], redo) -> pd.DataFrame:
    """One frame from the chunks. A column numeric in every chunk stays numeric (int64 only if
    int64 in all, as one parse of the whole file gives); a column that is text in some chunk is
    text in all of them, as a whole-file parse would read it: those columns are read again as
    text (``redo``) rather than turning one chunk's numbers into strings of a different spelling."""
    columns = list(chunks[0].columns)
    text = [c for c in columns if any(not pd.api.types.is_numeric_dtype(ch[c]) for ch in chunks)]
    mixed = [c for c in text if any(pd.api.types.is_numeric_dtype(ch[c]) for ch in chunks)]
    if mixed:
        chunks = redo(mixed)
    out = {}
    for col in columns:  # each column leaves the chunks as it joins the frame: one copy at a time
        parts = [ch.pop(col) for ch in chunks]
        if col in text:
            out[col] = pd.Series(pd.api.types.union_categoricals(
                [p.astype("category") for p in parts], ignore_order=True))
        else:
            out[col] = pd.Series(np.concatenate([p.to_numpy() for p in parts]))
    return pd.DataFrame(out)


def read_table_streamed(path: Path) -> tuple[pd.DataFrame, dict]:
    """A CSV or Parquet file read in chunks into a compact frame (text columns as categoricals),
    and its file record (path, sha256 of the bytes read, size). Bad input raises DataError
    naming the file, as :func:`govssl.data.read_table` does."""
    from govssl.data import _compression, unusable_path
    from govssl.preflight import check_header_row

    problem = unusable_path(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    check_header_row(path)
    suffix = "".join(path.suffixes[-2:]).lower()
    kind = "Parquet" if suffix.endswith((".parquet", ".pq")) else "CSV"
    compression = compression_of(suffix)
    try:
        if kind == "Parquet":
            import pyarrow.parquet as pq

            from govssl.records import sha256_file

            digest, size = sha256_file(path), path.stat().st_size
            reader = pq.ParquetFile(path)
            chunks = [_compact(batch.to_pandas()) for batch in reader.iter_batches(batch_size=CHUNK_ROWS)]

            def redo(columns):
                return [batch.to_pandas().astype({c: str for c in columns})
                        for batch in reader.iter_batches(batch_size=CHUNK_ROWS)]
        else:
            # the text columns of the first chunk are parsed straight into categoricals (no Python
            # string per row); a column numeric there and text later is read again below
            first = pd.read_csv(path, skipinitialspace=True, nrows=CHUNK_ROWS, compression=compression or "infer")
            text_columns = {c: "category" for c in first.columns
                            if not pd.api.types.is_numeric_dtype(first[c]) or pd.api.types.is_bool_dtype(first[c])}
            del first

            def parse(dtype=None):
                dtype = {**text_columns, **(dtype or {})}
                if compression in ("zip", "tar"):  # archives need a seekable file: hashed in a pass of their own
                    from govssl.records import sha256_file

                    digest = sha256_file(path)
                    parts = [_compact(ch) for ch in pd.read_csv(path, skipinitialspace=True, chunksize=CHUNK_ROWS,
                                                                dtype=dtype)]
                    return parts, digest, path.stat().st_size
                with open(path, "rb") as raw:
                    hashing = _HashingReader(raw)
                    parts = [_compact(ch) for ch in pd.read_csv(
                        hashing, skipinitialspace=True, chunksize=CHUNK_ROWS, compression=compression,
                        dtype=dtype)]
                    return parts, hashing.finish(), hashing.size

            chunks, digest, size = parse()

            def redo(columns):
                parts, again, _ = parse({c: str for c in columns})
                if again != digest:
                    raise IntegrityError(f"{path}: the file changed while it was being read (sha256 "
                                         f"{digest}, then {again})")
                return parts
        frame = _combine(path, chunks, redo) if chunks else pd.DataFrame()
    except (DataError, IntegrityError):
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (no header, no rows)") from None
    except MemoryError:
        raise DataError(f"{path}: too large to load into memory as {kind}, even in chunks") from None
    except Exception as exc:  # noqa: BLE001  any parser or decompressor failure is this file's fault
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DataError(f"{path}: cannot read as {kind}{_compression(suffix)}: {text}") from None
    return read_columns(path, frame), {"path": str(path), "sha256": digest, "size": int(size)}


def read_columns(path, frame: pd.DataFrame) -> pd.DataFrame:
    """A table as read, checked: at least one data row, header names stripped, none twice
    (DataError naming the file otherwise)."""
    if frame.empty:
        raise DataError(f"{path}: the file has a header but no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if dupes:
        raise DataError(f"{path}: duplicate column name(s): {', '.join(dupes)}")
    return frame


class EncodedRows:
    """Rows ``[start, stop)`` of a memory-mapped float32 matrix, indexed like a numpy array:
    ``rows[i]``, ``rows[a:b]``, ``rows[index_array]`` (numpy or torch; a torch index gives a torch
    tensor, so training indexes it as it indexes a tensor) and ``rows[index, columns]``. Every
    index returns a copy in memory. ``np.asarray(rows)`` reads all of them into memory."""

    def __init__(self, matrix: np.memmap, start: int = 0, stop: int | None = None):
        self._matrix = matrix
        self._start = int(start)
        self._stop = int(len(matrix) if stop is None else stop)
        self._touched = 0
        self._fd = None  # the matrix file, opened for scattered reads on first use

    def __getstate__(self):
        return {**self.__dict__, "_fd": None}  # a descriptor belongs to one process

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._stop - self._start,) + tuple(self._matrix.shape[1:])

    @property
    def ndim(self) -> int:
        return self._matrix.ndim

    @property
    def dtype(self):
        return self._matrix.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self._stop - self._start

    def _rows(self, key):
        n = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            return slice(self._start + start, self._start + stop, step)
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -n <= i < n:
                raise IndexError(f"row {i} out of range for {n} rows")
            return self._start + (i % n)
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = index.astype(np.int64, copy=False)
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        return self._start + (index % n)

    def __getitem__(self, key):
        torch_key = _is_tensor(key) or (isinstance(key, tuple) and any(_is_tensor(k) for k in key))
        rows = self._rows(_as_numpy(key[0] if isinstance(key, tuple) else key))
        rest = tuple(_as_numpy(k) for k in key[1:]) if isinstance(key, tuple) else ()
        scattered = not (isinstance(rows, slice) or np.ndim(rows) == 0)
        if hasattr(os, "preadv") and getattr(self._matrix, "filename", None):
            # Every index is read with system calls (one per run of consecutive rows), not through
            # the mapping: a scattered row there would map a whole large folio of the page cache
            # (2 MB measured on Linux 6.18) into this process's resident set
            # (benchmarks/bench_large_tables.py measures both ways), and a file cut short under
            # the mapping would kill the process with SIGBUS, where a short read is an
            # IntegrityError. A block of consecutive rows costs the same either way.
            index = np.arange(rows.start, rows.stop, rows.step) if isinstance(rows, slice) else rows
            out = self._read_rows(np.atleast_1d(index))
            if np.ndim(index) == 0:  # one row
                out = out[0]
            if rest:  # the row axis (when there is one) is whole; the rest index the others
                out = np.array(out[(slice(None),) * (out.ndim - self._matrix.ndim + 1) + rest])
        else:  # no preadv (or no file behind the matrix): through the mapping
            out = np.array(self._matrix[(rows,) + rest] if rest else self._matrix[rows])
            # bytes mapped in: a slice maps its own range, a scattered row a whole folio
            self._forget(out.size * self._matrix.itemsize if not scattered else len(rows) * FAULT_AROUND_BYTES)
        if torch_key:
            import torch

            return torch.from_numpy(out)
        return out

    def __iter__(self):
        for start in range(0, len(self), 4096):
            yield from self[start : start + 4096]

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def astype(self, dtype, copy: bool = True):
        return np.asarray(self).astype(dtype, copy=copy)

    def reshape(self, *shape):
        return np.asarray(self).reshape(*shape)

    def chunks(self, size: int = CHUNK_ROWS):
        """(start, rows) for consecutive blocks of ``size`` rows."""
        for start in range(0, len(self), size):
            yield start, self[start : start + size]

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        """The matrix rows ``rows`` (absolute row numbers), read from its file by ``preadv``."""
        matrix = self._matrix
        row_bytes = int(np.prod(matrix.shape[1:])) * matrix.itemsize
        out = np.empty((len(rows),) + tuple(matrix.shape[1:]), dtype=matrix.dtype)
        if self._fd is None:
            fd = os.open(matrix.filename, os.O_RDONLY)
            expected = int(getattr(matrix, "offset", 0)) + len(matrix) * row_bytes
            if os.fstat(fd).st_size < expected:  # the mapped file was verified; this one must be it
                os.close(fd)
                raise IntegrityError(f"{matrix.filename}: the encoded-table cache is shorter than when it was "
                                     f"verified ({expected} bytes): it changed during the audit")
            self._fd = fd
        view = memoryview(out).cast("B")
        base = int(getattr(matrix, "offset", 0))
        rows = np.asarray(rows, dtype=np.int64)
        # one call per run of consecutive rows (a random batch: a call per row; the sorted rows of
        # a class or a sample: few calls)
        starts = np.flatnonzero(np.r_[True, np.diff(rows) != 1]) if len(rows) else np.zeros(0, np.int64)
        for first, stop in zip(starts.tolist(), np.r_[starts[1:], len(rows)].tolist()):
            done, size = first * row_bytes, (stop - first) * row_bytes
            offset = base + int(rows[first]) * row_bytes
            while size:
                got = os.preadv(self._fd, [view[done:done + size]], offset)
                if got <= 0:
                    raise IntegrityError(f"{matrix.filename}: the encoded-table cache ended at row "
                                         f"{int(rows[first])} ({size} bytes missing): it changed during the audit")
                done, size, offset = done + got, size - got, offset + got
        return out

    def _forget(self, nbytes: int) -> None:
        """Past RESIDENT_BYTES read, drop this process's mapped pages (the data stays in the page
        cache, and a later read maps it back): mapped pages count in the resident set."""
        self._touched += nbytes
        if self._touched < RESIDENT_BYTES:
            return
        self._touched = 0
        handle = getattr(self._matrix, "_mmap", None)
        if handle is not None and hasattr(mmap, "MADV_DONTNEED"):
            try:
                handle.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass


def _is_tensor(key) -> bool:
    return type(key).__module__.startswith("torch")


def _as_numpy(key):
    return key.numpy() if _is_tensor(key) else key


def _digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def cache_key(files: list[dict], encoder, train_rows: np.ndarray | None, n_train: int, n_test: int) -> str:
    """What the encoded matrix depends on: the data files' bytes, the fitted encoder, the split."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "files": [f["sha256"] for f in files],
                         "features": encoder.feature_names,
                         "numeric": [[c.name, c.log, c.mean.hex(), c.std.hex()] for c in encoder.numeric],
                         "categorical": [[c.name, list(c.levels)] for c in encoder.categorical],
                         "rows": [n_train, n_test]}, sort_keys=True).encode())
    if train_rows is not None:
        h.update(np.ascontiguousarray(train_rows, dtype=np.int64).tobytes())
    return h.hexdigest()


def _load_cached(data_path: Path, meta_path: Path, key: str, shape: tuple[int, int]) -> np.memmap | None:
    """The cached matrix if its sidecar names this key and shape and the file's size and sha256
    match the sidecar; None otherwise (absent, partial, corrupt: encode again)."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        expected = shape[0] * shape[1] * 4
        if (meta.get("key") != key or tuple(meta.get("shape", ())) != shape or meta.get("size") != expected
                or data_path.stat().st_size != expected or _digest_file(data_path) != meta.get("sha256")):
            return None
        return np.memmap(data_path, dtype=np.float32, mode="r", shape=shape)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def encoded_rows(encoder, train: pd.DataFrame, test: pd.DataFrame, files: list[dict],
                 train_rows: np.ndarray | None, folder: Path | None = None) -> tuple[EncodedRows, EncodedRows, dict]:
    """The encoded training and test rows, from the cache or encoded now into it; and a record of
    the cache file (path, sha256, whether it was reused). Raises DataError naming the column when
    a value does not encode to a finite number (nothing is cached then)."""
    folder = folder or cache_dir()
    n_train, n_test, width = len(train), len(test), encoder.n_features
    shape = (n_train + n_test, width)
    key = cache_key(files, encoder, train_rows, n_train, n_test)
    data_path, meta_path = folder / f"{key}.f32", folder / f"{key}.json"
    matrix = _load_cached(data_path, meta_path, key, shape)
    reused = matrix is not None
    if matrix is None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"{folder}: cannot create the cache folder for encoded tables ({CACHE_ENV}): "
                            f"{exc.strerror or exc}") from None
        matrix = _write(folder, data_path, meta_path, key, shape, encoder, [("training", train), ("test", test)])
    record = {"path": str(data_path), "sha256": json.loads(meta_path.read_text(encoding="utf-8"))["sha256"],
              "rows": shape[0], "features": width, "reused": reused}
    return EncodedRows(matrix, 0, n_train), EncodedRows(matrix, n_train, shape[0]), record


def _write(folder: Path, data_path: Path, meta_path: Path, key: str, shape, encoder, parts) -> np.memmap:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".partial", dir=folder)
    tmp = Path(tmp_name)
    meta_tmp = tmp.with_suffix(".json.partial")
    try:
        digest = hashlib.sha256()
        # written through the file, not a writable mapping: dirty mapped pages would count in the
        # resident set until the whole file was flushed
        with os.fdopen(fd, "wb") as fh:
            for split, frame in parts:
                for start in range(0, len(frame), CHUNK_ROWS):
                    block = encoder.transform(frame.iloc[start : start + CHUNK_ROWS])
                    bad = encoder.nonfinite(block)
                    if bad:
                        raise DataError(
                            f"numeric column(s) {', '.join(repr(c) for c in bad[:10])} of the {split} rows do "
                            "not standardise to finite numbers: their values lie too far outside the training "
                            "rows' range (beyond float32 once divided by the training standard deviation); "
                            "rescale the column or list it under dataset.drop")
                    raw = np.ascontiguousarray(block, dtype=np.float32).tobytes()
                    fh.write(raw)
                    digest.update(raw)
            fh.flush()
            os.fsync(fh.fileno())
        meta_tmp.write_text(json.dumps({"key": key, "shape": list(shape), "size": shape[0] * shape[1] * 4,
                                        "sha256": digest.hexdigest(), "dtype": "float32", "format": FORMAT}),
                            encoding="utf-8")
        os.replace(tmp, data_path)
        os.replace(meta_tmp, meta_path)  # the sidecar last: a file without it is never reused
    except BaseException:
        for leftover in (tmp, meta_tmp):
            leftover.unlink(missing_ok=True)
        raise
    return np.memmap(data_path, dtype=np.float32, mode="r", shape=shape)
