"""The out-of-core path (dataset.out_of_core): streamed reading, the cached memory-mapped encoding,
and the figures it gives against the in-memory path on the same small table."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import fast_plan_data, run_cli


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("GOVSSL_CACHE_DIR", str(folder))
    return folder


def _plan(adult_csvs, mode: str, **dataset):
    from govssl.plan import AuditPlan

    data = fast_plan_data(*adult_csvs)
    data["dataset"].update(out_of_core=mode, **dataset)
    return AuditPlan.model_validate(data)


def _load(adult_csvs, mode: str, **dataset):
    from govssl.data import load

    return load(_plan(adult_csvs, mode, **dataset))


def test_out_of_core__same_encoder_arrays_and_rows_as_in_memory(adult_csvs, cache):
    for split in ({}, {"test_path": None}):  # a test file, and a split of one file by the seed
        memory, mapped = _load(adult_csvs, "never", **split), _load(adult_csvs, "always", **split)
        assert not memory.out_of_core and mapped.out_of_core
        assert mapped.encoder.feature_names == memory.encoder.feature_names
        assert mapped.encoder.numeric == memory.encoder.numeric  # same means, stds and ranges, to the bit
        assert mapped.encoder.categorical == memory.encoder.categorical
        np.testing.assert_array_equal(np.asarray(mapped.X_train), memory.X_train)
        np.testing.assert_array_equal(np.asarray(mapped.X_test), memory.X_test)
        np.testing.assert_array_equal(mapped.y_train, memory.y_train)
        np.testing.assert_array_equal(mapped.y_test, memory.y_test)
        assert mapped.files[0]["sha256"] == memory.files[0]["sha256"]
        assert mapped.files[0]["size"] == memory.files[0]["size"]
        pd.testing.assert_frame_equal(mapped.train.astype(str), memory.train.astype(str))
        # indexing the mapped rows as training does (a torch index gives a tensor)
        import torch

        idx = torch.tensor([5, 0, 17, 5])
        np.testing.assert_array_equal(mapped.X_train[idx].numpy(), memory.X_train[idx.numpy()])
        np.testing.assert_array_equal(mapped.X_test[3:9], memory.X_test[3:9])


def test_out_of_core__gzip_csv_reads_like_the_plain_file(adult_csvs, cache, tmp_path):
    train, test = adult_csvs
    packed = tmp_path / "train.csv.gz"
    packed.write_bytes(gzip.compress(train.read_bytes()))
    memory = _load(adult_csvs, "never")
    mapped = _load((packed, test), "always")
    np.testing.assert_array_equal(np.asarray(mapped.X_train), memory.X_train)
    import hashlib

    assert mapped.files[0]["sha256"] == hashlib.sha256(packed.read_bytes()).hexdigest()


def test_out_of_core__cache_is_reused_and_a_corrupt_one_is_rebuilt(adult_csvs, cache):
    first = _load(adult_csvs, "always")
    record = first.files[0]["encoded_cache"]
    assert record["reused"] is False
    expected = np.asarray(first.X_train).copy()
    again = _load(adult_csvs, "always")
    assert again.files[0]["encoded_cache"]["reused"] is True
    matrix, sidecar = cache / f"{record['path'].rsplit('/', 1)[-1]}", None
    sidecar = matrix.with_suffix(".json")
    assert sorted(p.name for p in cache.iterdir()) == sorted([matrix.name, sidecar.name])  # no partial file left

    # one flipped byte: the sha256 differs, the cache is encoded again, never trusted
    raw = bytearray(matrix.read_bytes())
    raw[100] ^= 0xFF
    matrix.write_bytes(bytes(raw))
    rebuilt = _load(adult_csvs, "always")
    assert rebuilt.files[0]["encoded_cache"]["reused"] is False
    np.testing.assert_array_equal(np.asarray(rebuilt.X_train), expected)

    # a truncated file, then a sidecar that is not JSON: both rebuilt
    matrix.write_bytes(matrix.read_bytes()[:1000])
    assert _load(adult_csvs, "always").files[0]["encoded_cache"]["reused"] is False
    sidecar.write_text("{not json", encoding="utf-8")
    last = _load(adult_csvs, "always")
    assert last.files[0]["encoded_cache"]["reused"] is False
    np.testing.assert_array_equal(np.asarray(last.X_train), expected)
    assert json.loads(sidecar.read_text(encoding="utf-8"))["sha256"] == last.files[0]["encoded_cache"]["sha256"]


def test_out_of_core__auto_follows_the_file_size_against_memory(tmp_path, monkeypatch):
    from govssl.data import _ooc

    table = tmp_path / "t.csv"
    table.write_bytes(b"a,b\n" + b"1,2\n" * 1000)  # 4,004 bytes
    monkeypatch.setattr(_ooc, "physical_memory", lambda: 2 * 4004 * _ooc.IN_MEMORY_FACTOR + 2)
    assert not _ooc.wants_out_of_core("auto", [table])
    monkeypatch.setattr(_ooc, "physical_memory", lambda: 2 * 4004 * _ooc.IN_MEMORY_FACTOR - 2)
    assert _ooc.wants_out_of_core("auto", [table])
    assert _ooc.wants_out_of_core("always", [table]) and not _ooc.wants_out_of_core("never", [table])


def _audit(capsys, write_plan, adult_csvs, mode: str, tmp_path):
    data = fast_plan_data(*adult_csvs)
    data["dataset"]["out_of_core"] = mode
    # DP-SGD with VIME pretraining: Poisson sampling reads the mapped rows batch by batch
    data["training"]["pretrain"] = {"method": "vime", "epochs": 1, "batch_size": 256}
    data["training"]["dp"] = {"enabled": True, "target_epsilon": 3.0, "delta": 1e-5}
    data["checks"] = {"performance": {"n_boot": 200}, "fairness": {"n_boot": 200, "min_group_size": 30}}
    plan = write_plan(data, f"plan-{mode}.yaml")
    code, out, err = run_cli(capsys, "audit", str(plan), "--json", "--db", f"sqlite:///{tmp_path / mode}.db",
                             "--out", str(tmp_path / f"out-{mode}"))
    assert code in (0, 1), err
    return json.loads(out)


def _points(run, check):
    return {(m["metric"], m["subject"]): m["value"]
            for r in run["checks"] if r["check"] == check for m in r["measurements"]}


def test_out_of_core__audit_trains_the_same_model_and_counts_the_same_figures(capsys, write_plan, adult_csvs,
                                                                               cache, tmp_path):
    memory = _audit(capsys, write_plan, adult_csvs, "never", tmp_path)
    mapped = _audit(capsys, write_plan, adult_csvs, "always", tmp_path)
    assert mapped["training"]["model_sha256"] == memory["training"]["model_sha256"]
    assert mapped["training"]["dp"]["epsilon"] == memory["training"]["dp"]["epsilon"]
    for check in ("performance", "fairness"):
        expected, got = _points(memory, check), _points(mapped, check)
        assert got.keys() == expected.keys() and expected
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12, nan_ok=True), (check, key)
    # the intervals come from other (streamed) resamples of the same distribution: close, not equal
    perf = {m["metric"]: m for r in mapped["checks"] if r["check"] == "performance" for m in r["measurements"]}
    for m in perf.values():
        assert m["ci_low"] is not None and m["ci_low"] <= m["value"] <= m["ci_high"], m


def test_out_of_core__unreadable_csv_is_an_input_error_naming_the_file(capsys, write_plan, adult_csvs, cache,
                                                                       tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(adult_csvs[0].read_bytes())[:5000])  # truncated
    data = fast_plan_data(bad, adult_csvs[1])
    data["dataset"]["out_of_core"] = "always"
    code, _, err = run_cli(capsys, "audit", str(write_plan(data)), "--quiet")
    assert code == 2
    assert str(bad) in " ".join(err.split()) or "bad.csv.gz" in err
    assert not (tmp_path / "govssl-out").exists() or not any((tmp_path / "govssl-out").iterdir())
    assert not cache.exists() or not any(cache.iterdir())


def test_confusion_points_equal_scikit_learn():
    import warnings

    from sklearn import metrics as skm

    from govssl.checks.performance import confusion_counts, confusion_points

    rng = np.random.default_rng(3)
    for y, pred in ((rng.integers(0, 2, 500), rng.integers(0, 2, 500)), (np.zeros(40, int), rng.integers(0, 2, 40)),
                    (np.ones(40, int), np.zeros(40, int))):
        points = confusion_points(*confusion_counts(y, pred))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns of a class absent from y
            assert points["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-15)
            assert points["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-15)
            assert points["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0.0), abs=1e-15)


def test_streamed_bootstraps_match_the_row_bootstrap_in_distribution():
    """The multinomial cell counts (fairness) and the Poisson-weighted stream (performance) resample
    the same distribution as drawing rows: means and spreads agree within Monte Carlo error."""
    from govssl.checks._bootstrap import bootstrap_sums, multinomial_sums
    from govssl.checks.performance import PerformanceCheck

    rng = np.random.default_rng(1)
    n = 20_000
    y = rng.integers(0, 2, n)
    score = np.round(np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1), 2).astype(np.float32)  # many ties
    proba = np.column_stack([1 - score, score]).astype(np.float32)
    check = PerformanceCheck(n_boot=600)
    rows = check._bootstrap(y, proba.argmax(axis=1), proba, 0)
    streamed = check._bootstrap_streamed(y, proba, 0, chunk=7)
    assert streamed.shape == rows.shape
    np.testing.assert_allclose(streamed.mean(axis=0), rows.mean(axis=0), atol=4 * rows.std(axis=0).max() / 20)
    np.testing.assert_allclose(streamed.std(axis=0), rows.std(axis=0), rtol=0.2)

    cells = rng.integers(0, 8, n)
    indicators = np.eye(8, dtype=np.float32)[cells]
    drawn, counted = bootstrap_sums(indicators, 600, 0), multinomial_sums(indicators.sum(axis=0), 600, 0)
    assert (counted.sum(axis=1) == n).all()
    np.testing.assert_allclose(counted.mean(axis=0), drawn.mean(axis=0), rtol=0.01)
    np.testing.assert_allclose(counted.std(axis=0), drawn.std(axis=0), rtol=0.2)


def test_out_of_core__a_file_that_differs_from_its_verified_manifest_is_an_integrity_error(adult_csvs, cache):
    """The chunked read hashes the bytes it parses; they must be the bytes the manifest verified."""
    from types import SimpleNamespace

    from govssl.data import load
    from govssl.errors import IntegrityError

    plan = _plan(adult_csvs, "always")
    train = str(adult_csvs[0].resolve())
    stale = SimpleNamespace(files=({"path": train, "sha256": "0" * 64, "size": 1},))
    with pytest.raises(IntegrityError, match="changed after its manifest was verified"):
        load(plan, stale)
    assert not cache.exists() or not any(cache.iterdir())  # nothing encoded or cached
    same = SimpleNamespace(files=({"path": train, "sha256": load(plan).files[0]["sha256"], "size": 1},))
    assert load(plan, same).out_of_core


@pytest.mark.slow
def test_out_of_core__the_demo_plan_trains_the_same_model_on_both_paths(tmp_path, adult_frames, monkeypatch):
    """The demo's plan (its full training budget, DP-SGD over VIME pretraining and fine-tuning) on
    the Adult train and test files as CSV: the same weights file either way."""
    import yaml

    from govssl.data import load
    from govssl.plan import AuditPlan
    from govssl.progress import NullProgress
    from govssl.train import fit
    from tests.conftest import REPO

    monkeypatch.setenv("GOVSSL_CACHE_DIR", str(tmp_path / "cache"))
    train, test = adult_frames
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    data = yaml.safe_load((REPO / "audits" / "adult-income.yaml").read_text(encoding="utf-8"))
    data["dataset"] = {"path": str(tmp_path / "train.csv"), "test_path": str(tmp_path / "test.csv"),
                       "target": "income", "positive_label": ">50K", "sensitive": ["sex", "race"], "drop": ["fnlwgt"]}
    digests = {}
    for mode in ("never", "always"):
        data["dataset"]["out_of_core"] = mode
        plan = AuditPlan.model_validate(data)
        dataset = load(plan)
        assert dataset.out_of_core == (mode == "always")
        (tmp_path / mode).mkdir()
        digests[mode] = fit(plan, dataset, tmp_path / mode, NullProgress()).record.model_sha256
    assert digests["always"] == digests["never"]


def _rss_file_bytes() -> int:
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssFile in /proc/self/status")


def test_encoded_rows__every_index_reads_the_matrix_rows(tmp_path):
    import pickle

    import torch

    from govssl.data import EncodedRows

    path = tmp_path / "m.f32"
    values = np.arange(500 * 7, dtype=np.float32).reshape(500, 7)
    values.tofile(path)
    matrix = np.memmap(path, dtype=np.float32, mode="r", shape=(500, 7))
    rows = EncodedRows(matrix, 100, 400)  # rows 100..399, as a test split after the training rows
    part = values[100:400]
    index = np.array([5, 0, 299, 5, -1, 17])
    np.testing.assert_array_equal(rows[index], part[index])  # scattered, unsorted, repeated, negative
    np.testing.assert_array_equal(rows[torch.as_tensor(index)].numpy(), part[index])
    np.testing.assert_array_equal(rows[index, 2:5], part[index, 2:5])
    np.testing.assert_array_equal(rows[part[:, 0] % 3 == 0], part[part[:, 0] % 3 == 0])  # a mask
    np.testing.assert_array_equal(rows[10:20], part[10:20])
    runs = np.r_[np.arange(40, 90), [3], np.arange(200, 300), [299, 0, 1]]  # runs of consecutive rows, one read each
    np.testing.assert_array_equal(rows[runs], part[runs])
    np.testing.assert_array_equal(rows[7], part[7])
    np.testing.assert_array_equal(rows[7, 2:5], part[7, 2:5])  # one row, some columns
    np.testing.assert_array_equal(rows[-3, 1], part[-3, 1])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(rows))[index], part[index])  # another process's copy
    with pytest.raises(IndexError):
        rows[np.array([300])]


def test_encoded_rows__a_cache_file_cut_short_during_the_audit_is_an_integrity_error(tmp_path):
    from govssl.data import EncodedRows
    from govssl.errors import IntegrityError

    path = tmp_path / "m.f32"
    np.arange(500 * 7, dtype=np.float32).reshape(500, 7).tofile(path)
    rows = EncodedRows(np.memmap(path, dtype=np.float32, mode="r", shape=(500, 7)))
    assert rows[np.array([3, 400])].shape == (2, 7)  # opens the file for scattered reads
    os.truncate(path, 300 * 7 * 4)
    with pytest.raises(IntegrityError, match="m.f32: the encoded-table cache ended at row 400"):
        rows[np.array([3, 400])]
    # a block of consecutive rows and a single row too (through the mapping they would raise SIGBUS)
    with pytest.raises(IntegrityError, match="ended at row 250"):
        rows[250:350]
    with pytest.raises(IntegrityError, match="ended at row 450"):
        rows[450]
    np.testing.assert_array_equal(rows[10:20, 1], np.arange(500 * 7, dtype=np.float32).reshape(500, 7)[10:20, 1])
    fresh = EncodedRows(np.memmap(path, dtype=np.float32, mode="r", shape=(300, 7)))
    os.truncate(path, 100 * 7 * 4)  # before its first scattered read: found when it opens the file
    with pytest.raises(IntegrityError, match="shorter than when it was verified"):
        fresh[np.array([1, 2])]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_encoded_rows__random_batches_stay_out_of_the_resident_set(tmp_path):
    """Random batches, as DP Poisson sampling draws them, from a 256 MB matrix: through the mapping
    each scattered row mapped a whole large folio (2 MB measured), so a few hundred batches held the
    whole file in the resident set; read by system calls, the batches add next to nothing."""
    from govssl.data import EncodedRows

    n, width = 600_000, 107
    path = tmp_path / "m.f32"
    block = np.ones((50_000, width), dtype=np.float32)
    with open(path, "wb") as fh:
        for start in range(0, n, len(block)):
            (block * start).tofile(fh)
    rows = EncodedRows(np.memmap(path, dtype=np.float32, mode="r", shape=(n, width)))
    rng = np.random.default_rng(0)
    before, most = _rss_file_bytes(), 0
    for _ in range(200):
        batch = rows[np.sort(rng.integers(0, n, 1024))]
        most = max(most, _rss_file_bytes() - before)
    assert batch.shape == (1024, width)
    assert most < 32 * 2**20  # the file is 257 MB
