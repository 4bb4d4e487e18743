"""Datasets: built-in (adult, digits), the user's CSV / Parquet, NPZ or image folder, split and encoded.

:func:`load` validates everything a plan says about the data before any training starts and
raises :class:`~govssl.errors.DataError` naming the file and the column on bad input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from govssl.data._builtin import documented_levels, load_builtin
from govssl.data._ooc import EncodedRows, read_columns, wants_out_of_core
from govssl.data._table import MISSING, TableEncoder, as_category_strings
from govssl.errors import DataError
from govssl.preflight import check_header_row, excluded_inputs, spec_problems
from govssl.records import DatasetSummary

__all__ = ["Dataset", "EncodedRows", "load", "load_public", "read_table", "TableEncoder", "MISSING", "MAX_SENSITIVE_GROUPS"]

MAX_SENSITIVE_GROUPS = 30


@dataclass
class Dataset:
    """A classification dataset, split: a binary table with its encoding fitted on the training
    rows, or images (``X`` of shape N x C x H x W, ``train`` / ``test`` frames holding the label)."""

    name: str
    source: str
    license: str
    citation: str
    target: str
    positive_label: str
    sensitive: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    train: pd.DataFrame
    test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray
    encoder: TableEncoder
    X_train: np.ndarray
    X_test: np.ndarray
    files: list[dict] = field(default_factory=list)
    classes: tuple[str, ...] = ()  # class names in label order (y == i is classes[i])
    task: str = "tabular-classification"  # or image-classification

    @property
    def out_of_core(self) -> bool:
        """The encoded features are in a memory-mapped file (read in batches), not in memory."""
        return isinstance(self.X_test, EncodedRows)

    @property
    def is_images(self) -> bool:
        return self.task == "image-classification"

    def sensitive_frame(self, split: str = "test") -> pd.DataFrame:
        """Sensitive columns as category strings (missing values as their own group)."""
        frame = self.test if split == "test" else self.train
        return pd.DataFrame({c: as_category_strings(frame[c]) for c in self.sensitive})

    def summary(self) -> DatasetSummary:
        missing = {
            c: int(self.train[c].isna().sum() + self.test[c].isna().sum())
            for c in self.train.columns
            if self.train[c].isna().any() or self.test[c].isna().any()
        }
        return DatasetSummary(
            name=self.name,
            source=self.source,
            license=self.license,
            citation=self.citation,
            target=self.target,
            positive_label=self.positive_label,
            sensitive=self.sensitive,
            numeric_features=self.numeric,
            categorical_features=self.categorical,
            n_train=len(self.train),
            n_test=len(self.test),
            # multiclass: share of class 1 is no "positive rate"; the classes are listed instead
            positive_rate_train=float(self.y_train.mean()) if len(self.classes) <= 2 else 0.0,
            positive_rate_test=float(self.y_test.mean()) if len(self.classes) <= 2 else 0.0,
            files=tuple(self.files),
            missing=missing,
            task=self.task,
            classes=tuple(self.classes),
        )


def unusable_path(path: Path, what: str = "data file") -> str | None:
    """Why ``path`` is no readable file (``None`` if it is one): not found, a symlink loop, a
    folder, or the operating system's reason."""
    import os

    try:
        st = path.stat()
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            return f"{what} not found"
        return f"cannot open the {what}: {exc.strerror or exc}"
    except RuntimeError:  # pathlib's own symlink-loop error
        return f"cannot open the {what}: too many levels of symbolic links"
    import stat as stat_module

    if stat_module.S_ISDIR(st.st_mode):
        return f"is a folder, expected a {what}"
    if not os.access(path, os.R_OK):
        return f"cannot open the {what}: permission denied"
    return None


def read_table(path: Path, raw: bytes | None = None) -> pd.DataFrame:
    """A CSV or Parquet file as a frame (compressed CSV too, by suffix); unreadable, corrupt or
    empty files raise DataError naming the file. ``raw``: the file's bytes, already read (and
    hashed) by the caller: parsed instead of reading the file again."""
    problem = unusable_path(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    check_header_row(path)  # before pandas renames a repeated header to "name.1"
    suffix = "".join(path.suffixes[-2:]).lower()
    kind = "Parquet" if suffix.endswith((".parquet", ".pq")) else "CSV"
    source = path
    if raw is not None:
        import io

        from govssl.data._ooc import compression_of

        source = io.BytesIO(raw)
    try:
        if kind == "Parquet":
            frame = pd.read_parquet(source)
        elif raw is not None:
            frame = pd.read_csv(source, skipinitialspace=True, compression=compression_of(suffix))
        else:
            frame = pd.read_csv(source, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (no header, no rows)") from None
    except MemoryError:
        raise DataError(f"{path}: too large to load into memory as {kind}") from None
    except Exception as exc:  # noqa: BLE001  any parser or decompressor failure is this file's fault
        # (pandas raises ParserError/ValueError, gzip/bz2 EOFError, zipfile BadZipFile, zlib.error,
        # lzma LZMAError, pyarrow ArrowInvalid, an ImportError for a codec that is not installed)
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DataError(f"{path}: cannot read as {kind}{_compression(suffix)}: {text}") from None
    return read_columns(path, frame)


def _same_as_verified(files: list[dict], manifest) -> None:
    from govssl.errors import IntegrityError

    verified = {f["path"]: f["sha256"] for f in manifest.files}
    for f in files:
        expected = verified.get(str(Path(f["path"]).resolve()))
        if expected is not None and expected != f["sha256"]:
            raise IntegrityError(f"{f['path']}: the file changed after its manifest was verified "
                                 f"(sha256 {expected} then, {f['sha256']} as read)")


def _read(path: Path, streamed: bool) -> tuple[pd.DataFrame, list[dict]]:
    """A table file as a frame and its file record (path, sha256, size): read whole, or in
    chunks with its bytes hashed as they are parsed (the out-of-core path)."""
    if streamed:
        from govssl.data._ooc import read_table_streamed

        frame, record = read_table_streamed(path)
        return frame, [record]
    problem = unusable_path(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    try:
        raw = path.read_bytes()  # read once: hashed, then parsed
    except MemoryError:
        raise DataError(f"{path}: too large to load into memory; set dataset.out_of_core: always") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open the data file: {exc.strerror or exc}") from None
    frame = read_table(path, raw)
    return frame, [{"path": str(path), "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}]


def _compression(suffix: str) -> str:
    for ending, name in ((".gz", "gzip"), (".bz2", "bzip2"), (".zip", "zip"), (".xz", "xz"), (".zst", "zstd"),
                         (".tar", "tar")):
        if suffix.endswith(ending):
            return f" ({name}-compressed; the file may be truncated or corrupt)"
    return ""


def _positive_label(where: str, target: str, values: list, given) -> str:
    shown = ", ".join(repr(v) for v in values)
    if len(values) != 2:
        raise DataError(
            f"{where}: column '{target}' (the target) must have exactly 2 classes; found "
            f"{len(values)}: {shown[:200]}"
        )
    if given is not None:
        matches = [v for v in values if str(v) == str(given)]
        if not matches:
            raise DataError(f"{where}: positive_label {given!r} is not a value of '{target}' ({shown})")
        return str(matches[0])
    for candidate in (1, True, "1", "yes", "true", "True"):
        matches = [v for v in values if str(v) == str(candidate)]
        if matches:
            return str(matches[0])
    raise DataError(
        f"{where}: say which value of '{target}' is the positive class with "
        f"dataset.positive_label (one of {shown})"
    )


def _check_columns(where: str, frame: pd.DataFrame, spec, target: str, sensitive: list[str]) -> list[str]:
    problems = []
    columns = set(frame.columns)
    if target not in columns:
        problems.append(f"{where}: target column '{target}' (dataset.target) not found; columns: {', '.join(frame.columns)}")
    for i, col in enumerate(sensitive):
        if col not in columns:
            problems.append(f"{where}: sensitive column '{col}' (dataset.sensitive[{i}]) not found")
    for key in ("drop", "categorical"):
        for i, col in enumerate(getattr(spec, key)):
            if col not in columns:
                problems.append(f"{where}: column '{col}' (dataset.{key}[{i}]) not found")
    return problems


def _type_features(frame: pd.DataFrame, target: str, drop: list[str], forced_categorical) -> tuple[list[str], list[str]]:
    numeric, categorical = [], []
    for col in frame.columns:
        if col == target or col in drop:
            continue
        if col in forced_categorical or not (
            pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col])
        ):
            categorical.append(col)
        else:
            numeric.append(col)
    return numeric, categorical


def _check_values(where: str, frame: pd.DataFrame, target: str, numeric: list[str]) -> list[str]:
    problems = []
    missing_target = int(frame[target].isna().sum())
    if missing_target:
        row = int(np.flatnonzero(frame[target].isna().to_numpy())[0]) + 1
        problems.append(f"{where}: target column '{target}' has {missing_target} missing value(s) (first in data row {row})")
    for col in numeric:
        values = frame[col].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            problems.append(
                f"{where}: numeric column '{col}' has {int(bad.sum())} NaN or infinite value(s) "
                f"(first in data row {row}); fill them, drop the rows, or list the column under dataset.drop"
            )
    return problems


def _require_finite(where: str, encoder: TableEncoder, X: np.ndarray, rows: str) -> None:
    """Standardisation does not overflow on the training rows (see TableEncoder), but a value far
    enough outside their range leaves float32; a model input must be a finite number."""
    bad = encoder.nonfinite(X)
    if bad:
        raise DataError(
            f"{where}: numeric column(s) {', '.join(repr(c) for c in bad[:10])} of {rows} do not standardise "
            "to finite numbers: their values lie too far outside the training rows' range (beyond "
            "float32 once divided by the training standard deviation); rescale the column or list "
            "it under dataset.drop"
        )


def _check_groups(where: str, frame: pd.DataFrame, sensitive: list[str]) -> list[str]:
    problems = []
    for col in sensitive:
        n_groups = frame[col].nunique(dropna=False)
        if n_groups > MAX_SENSITIVE_GROUPS:
            problems.append(
                f"{where}: sensitive column '{col}' has {n_groups} distinct values; group it into "
                f"at most {MAX_SENSITIVE_GROUPS} bands first (e.g. age bands)"
            )
    return problems


def _split(frame: pd.DataFrame, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: the same seed gives the same rows."""
    rng = np.random.default_rng(seed)
    test_idx = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        rng.shuffle(rows)
        test_idx.append(rows[: max(1, int(round(len(rows) * fraction)))])
    test = np.sort(np.concatenate(test_idx))
    train = np.setdiff1d(np.arange(len(frame)), test)
    return train, test


def _checked(plan, data: Dataset) -> Dataset:
    """``data``, once the model the plan asks for on it is known to fit the parameter limit: the
    input width is known only now, and nothing has been allocated for the model yet."""
    from govssl.errors import ConfigError
    from govssl.train.models import check_parameter_count

    spec = plan.training.encoder
    n_classes = max(2, len(data.classes))
    if data.is_images:
        arch = {"kind": "cnn", "in_shape": list(data.X_train.shape[1:]), "channels": list(spec.channels),
                "hidden_dims": list(spec.hidden_dims), "n_classes": n_classes}
    else:
        arch = {"in_dim": int(data.X_train.shape[1]), "hidden_dims": list(spec.hidden_dims), "n_classes": n_classes}
    try:
        check_parameter_count(arch)
    except ConfigError as exc:
        where = plan.source_path or "the plan"
        raise ConfigError(f"{where}: {exc}") from None
    return data


def _load_images(plan) -> Dataset:
    """Digits, an NPZ file or an image folder, with a stratified train/test split by the plan's seed."""
    from govssl.data._images import DIGITS_SOURCE, load_digits_arrays, load_image_folder, load_npz

    spec = plan.dataset
    if spec.builtin == "digits":
        x, y, classes, file = load_digits_arrays()
        meta = dict(DIGITS_SOURCE)
    else:
        path = plan.resolve(spec.path)
        if not path.exists():
            raise DataError(f"{path}: data file or folder not found")
        x, y, classes, file = load_npz(path) if path.is_file() else load_image_folder(path)
        meta = {"name": path.stem, "source": "not declared", "license": "not declared", "citation": ""}
    where = f"built-in dataset '{spec.builtin}'" if spec.builtin else str(plan.resolve(spec.path))
    if spec.test_path is not None:
        raise DataError(f"{where}: dataset.test_path is for tables; image data is split by dataset.test_fraction")
    if len(classes) < 2:
        raise DataError(f"{where}: the labels hold only {len(classes)} class; need at least 2")
    counts = np.bincount(y, minlength=len(classes))
    if counts.min() < 2:
        few = ", ".join(f"'{classes[i]}' ({counts[i]})" for i in np.flatnonzero(counts < 2))
        raise DataError(f"{where}: every class needs at least 2 images (one to train on, one to test); "
                        f"too few: {few}")
    labels = pd.DataFrame({"label": [classes[i] for i in y]})
    train_rows, test_rows = _split(labels, y, spec.test_fraction, plan.seed)
    if len(np.unique(y[train_rows])) < 2:
        raise DataError(f"{where}: after the split by dataset.test_fraction ({spec.test_fraction:g}) the training "
                        f"images hold fewer than 2 classes; add images or lower test_fraction")
    file = {**file, "split": f"stratified, {spec.test_fraction:g} of each class to test, seed {plan.seed}"}
    return _checked(plan, Dataset(
        name=spec.name or meta["name"], source=spec.source or meta["source"],
        license=spec.license or meta["license"], citation=spec.citation or meta["citation"],
        target="label", positive_label="", sensitive=(), numeric=(), categorical=(),
        train=labels.iloc[train_rows].reset_index(drop=True), test=labels.iloc[test_rows].reset_index(drop=True),
        y_train=y[train_rows], y_test=y[test_rows], encoder=None,
        X_train=x[train_rows], X_test=x[test_rows], files=[file],
        classes=tuple(classes), task="image-classification",
    ))


def load(plan, manifest=None) -> Dataset:
    """Load, validate, split and encode the data of a plan (an AuditPlan).

    ``manifest``: the plan's verified manifest (a ManifestReport), if any. A file read in chunks
    is hashed as it is parsed, and that digest must equal the one the manifest verified: a file
    changed in between raises IntegrityError (the file is not hashed a third time)."""
    spec = plan.dataset
    if spec.is_images(plan):
        return _load_images(plan)
    streamed = False  # built-in tables are small: always in memory
    if spec.builtin:
        source, train, test, files = load_builtin(spec.builtin)
        where = f"built-in dataset '{spec.builtin}'"
        test_where = f"{where} (test file)"
        target = spec.target or source.target
        positive = spec.positive_label if spec.positive_label is not None else source.positive_label
        sensitive = list(spec.sensitive if spec.sensitive is not None else source.sensitive)
        forced = set(spec.categorical) | set(source.categorical)
        # the dataset's documented values: no level is read from the (private) rows
        declared = {**documented_levels(source), **spec.levels}
        name, origin, licence, citation = (
            spec.name or source.name, spec.source or source.source,
            spec.license or source.license, spec.citation or source.citation,
        )
    else:
        path = plan.resolve(spec.path)
        paths = [path] + ([plan.resolve(spec.test_path)] if spec.test_path is not None else [])
        streamed = wants_out_of_core(spec.out_of_core, paths)
        train, files = _read(path, streamed)
        where = str(path)
        test, test_where = None, ""
        if spec.test_path is not None:
            test_path = paths[1]
            test, test_file = _read(test_path, streamed)
            test_where = str(test_path)
            files += test_file
            missing_cols = sorted(set(train.columns) ^ set(test.columns))
            if missing_cols:
                raise DataError(
                    f"{test_path}: columns differ from {path}: {', '.join(missing_cols)}"
                )
            test = test[list(train.columns)]
        target, positive = spec.target, spec.positive_label
        declared = dict(spec.levels)
        if not target:
            raise DataError(f"{where}: dataset.target is required for a table: name the label column")
        sensitive = list(spec.sensitive or [])
        forced = set(spec.categorical)
        name, origin, licence, citation = (
            spec.name or path.stem, spec.source or "not declared",
            spec.license or "not declared", spec.citation or "",
        )

    if manifest is not None and not spec.builtin:
        _same_as_verified(files, manifest)
    full = train if test is None else pd.concat([train, test], ignore_index=True)
    problems = _check_columns(where, full, spec, target, sensitive) + spec_problems(where, full, spec, target)
    if problems:
        raise DataError(f"{where}: {len(problems)} problem(s) with the data", problems)
    # not model inputs (still audited): dropped, declared personal data, sensitive if the plan says so
    dropped = excluded_inputs(spec, sensitive)
    numeric, categorical = _type_features(full, target, dropped, forced | set(declared))
    if not numeric and not categorical:
        raise DataError(f"{where}: no feature columns left after dropping {', '.join(spec.drop)}")
    # each file on its own, so that a row number counts the rows of the file it names
    parts = [(where, train)] if test is None else [(where, train), (test_where, test)]
    problems = [p for w, frame in parts for p in _check_values(w, frame, target, numeric)]
    problems += _check_groups(where, full, sensitive)
    if problems:
        raise DataError(f"{where}: {len(problems)} problem(s) with the data", problems)

    classes = sorted(full[target].dropna().unique().tolist(), key=str)
    positive = _positive_label(where, target, classes, positive)
    to_y = lambda f: (f[target].astype(str) == positive).to_numpy(dtype=np.int64)  # noqa: E731
    train_rows = None
    del full, parts  # the whole table is held by ``train`` alone, so the split's copies replace it
    if test is None:
        y_all = to_y(train)
        train_rows, test_rows = _split(train, y_all, spec.test_fraction, plan.seed)
        train, test = train.iloc[train_rows].reset_index(drop=True), train.iloc[test_rows].reset_index(drop=True)
    y_train, y_test = to_y(train), to_y(test)
    if len(np.unique(y_train)) < 2:
        raise DataError(f"{where}: the training rows hold only one class of '{target}'")

    levels = {c: declared[c] for c in categorical if c in declared}
    selection = None
    undeclared = [c for c in categorical if c not in levels]
    if plan.training.dp.enabled and undeclared:
        # under DP the levels of these columns are chosen privately; the trainer composes the cost
        from govssl.train._dp import level_selection

        selection = level_selection(plan.training.dp, len(undeclared), plan.seed)
    encoder = TableEncoder(numeric, categorical, levels=levels, selection=selection).fit(train)
    if streamed:
        from govssl.data._ooc import encoded_rows

        try:
            X_train, X_test, cache = encoded_rows(encoder, train, test, files,
                                                  train_rows if spec.test_path is None else None)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        files[0] = {**files[0], "encoded_cache": cache}
    else:
        X_train, X_test = encoder.transform(train), encoder.transform(test)
        _require_finite(where, encoder, X_train, "the training rows")
        _require_finite(test_where or where, encoder, X_test, "the test rows")
    return _checked(plan, Dataset(
        name=name, source=origin, license=licence, citation=citation,
        target=target, positive_label=positive, sensitive=tuple(sensitive),
        numeric=tuple(numeric), categorical=tuple(categorical),
        train=train, test=test, y_train=y_train, y_test=y_test, encoder=encoder,
        X_train=X_train, X_test=X_test, files=files,
        classes=tuple(c for c in map(str, classes) if c != positive) + (positive,),
    ))


def load_public(plan, data: Dataset) -> np.ndarray | None:
    """The rows of the plan's declared public pretraining data (``training.pretrain.public_data``),
    encoded like ``data``: a CSV / Parquet with the same feature columns, or images of the same
    shape (NPZ, where ``y`` may be left out, or an image folder). None when the plan declares none."""
    public = plan.training.pretrain.public_data
    if public is None:
        return None
    path = plan.resolve(public)
    if data.is_images:
        from govssl.data._images import load_image_folder, load_npz

        if not path.exists():
            raise DataError(f"{path}: public data not found (training.pretrain.public_data)")
        x = (load_npz(path, require_labels=False) if path.is_file() else load_image_folder(path))[0]
        if x.shape[1:] != data.X_train.shape[1:]:
            raise DataError(f"{path}: public images have shape {x.shape[1:]}, the training images "
                            f"{data.X_train.shape[1:]} (training.pretrain.public_data)")
        return x
    frame = read_table(path)
    needed = list(data.numeric) + list(data.categorical)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: public data lacks feature column(s) {', '.join(missing)} "
                        f"(training.pretrain.public_data)")
    problems = _check_values(str(path), frame.assign(**{data.target: 0}), data.target, list(data.numeric))
    if problems:
        raise DataError(f"{path}: {len(problems)} problem(s) with the public data", problems)
    X = data.encoder.transform(frame)
    _require_finite(str(path), data.encoder, X, "the public rows (training.pretrain.public_data)")
    return X
