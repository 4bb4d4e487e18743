"""Hostile and broken input through the command line: each is exit 2 naming the file and the key
or column, quickly, without a traceback, without creating the store and without a run folder.

Everything here is refused before training, except the one slow test that audits a column of
+-1e308 to show it now trains to finite features.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, fast_plan_data, run_cli


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A clean working folder: the default store (.govssl/audit.db) and output land here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOVSSL_DB_URL", raising=False)
    return tmp_path


def _audit(capsys, plan: Path) -> tuple[int, str]:
    code, out, err = run_cli(capsys, "audit", str(plan), "--quiet")
    assert "Traceback" not in out + err
    return code, err


def _nothing_written(workdir: Path) -> None:
    assert not (workdir / ".govssl" / "audit.db").exists(), "bad input must not create the store"
    out = workdir / "govssl-out"
    assert not out.exists() or not any(out.iterdir()), "bad input must not leave a run folder"


# ------------------------------------------------------------------------------------ YAML bombs


def _bomb_anchors(levels: int = 9) -> str:
    """Nine anchors, each a list of nine aliases of the previous: '*a8' stands for 9**9 strings."""
    lines = ["_a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"_a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _plan_text(adult_csvs, **overrides) -> str:
    return yaml.safe_dump(fast_plan_data(*adult_csvs, **overrides), sort_keys=False)


def _bomb_plan(tmp_path: Path, adult_csvs, where: str) -> Path:
    """A valid plan with an alias bomb as the value at ``where``: 'seed', 'model_card.limitations'
    or 'checks.performance.n_boot'. The anchors come first (YAML needs them before use)."""
    plan = fast_plan_data(*adult_csvs)
    *parents, leaf = where.split(".")
    node = plan
    for p in parents:
        node = node[p]
    node[leaf] = "BOMB"
    text = yaml.safe_dump(plan, sort_keys=False).replace("BOMB", "[" + ", ".join(["*a8"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb_anchors() + text, encoding="utf-8")
    return path


# Runs govssl in a child of a fresh, small Python and prints the child's exit code, wall time and
# peak RSS. A child forked straight from pytest (torch loaded) would report pytest's RSS as its
# own peak, since ru_maxrss counts the pages it holds between fork and exec.
_MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
try:
    proc = subprocess.run([sys.executable, "-m", "govssl.cli", *sys.argv[1:]], capture_output=True, timeout=60)
    code, text = proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")
except subprocess.TimeoutExpired:
    code, text = None, "still running after 60 s"
seconds = time.perf_counter() - started
peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kilobytes on Linux
print(json.dumps([code, text, seconds, peak_mb]))
"""


def _timed_cli(cwd: Path, *argv: str) -> tuple[int, str, float, float]:
    """`python -m govssl.cli ARGV` in a child process: (exit code, output, seconds, peak RSS in MB)."""
    env = {k: v for k, v in os.environ.items() if k != "GOVSSL_DB_URL"}
    result = subprocess.run([sys.executable, "-c", _MEASURE, *argv], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=120)
    code, text, seconds, peak_mb = json.loads(result.stdout)
    assert code is not None, f"govssl {' '.join(argv)} {text}"
    return code, text, seconds, peak_mb


@pytest.mark.parametrize("where", ["seed", "model_card.limitations", "checks.performance.n_boot"])
def test_alias_bomb_in_a_plan__exits_2_in_under_2_s_and_300_mb(where, tmp_path, adult_csvs):
    plan = _bomb_plan(tmp_path, adult_csvs, where)
    code, text, seconds, peak_mb = _timed_cli(tmp_path, "audit", str(plan), "--quiet")
    assert code == 2, text
    assert "bomb.yaml" in text and where in text and "100,000" in text, text
    assert "Traceback" not in text
    assert seconds < 2.0 and peak_mb < 300, (seconds, peak_mb)
    _nothing_written(tmp_path)


def test_alias_bomb_in_a_policy__exits_2_in_under_2_s_and_300_mb(tmp_path, adult_csvs):
    policy = yaml.safe_load((REPO / "policies" / "default.yaml").read_text())
    policy["description"] = "BOMB"
    text = yaml.safe_dump(policy, sort_keys=False).replace("BOMB", "[" + ", ".join(["*a8"] * 9) + "]")
    (tmp_path / "bomb-policy.yaml").write_text(_bomb_anchors() + text, encoding="utf-8")
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan_text(adult_csvs, policy=str(tmp_path / "bomb-policy.yaml")), encoding="utf-8")
    # `audit` validates the plan's check parameters before it reads the policy, which imports
    # every check module (torch among them): about 2 s of the time, none of it the bomb's
    for argv, limit in ((["policy", "validate", "bomb-policy.yaml"], 2.0), (["audit", str(plan), "--quiet"], 10.0)):
        code, out, seconds, peak_mb = _timed_cli(tmp_path, *argv)
        assert code == 2, out
        assert "bomb-policy.yaml" in out and "description" in out and "Traceback" not in out, out
        assert seconds < limit and peak_mb < 300, (argv, seconds, peak_mb)
    _nothing_written(tmp_path)


def test_self_referencing_anchor__exits_2_naming_the_line(capsys, workdir, adult_csvs):
    plan = workdir / "plan.yaml"
    plan.write_text(_plan_text(adult_csvs).replace("seed: 0", "seed: &loop [1, *loop]"), encoding="utf-8")
    code, err = _audit(capsys, plan)
    assert code == 2 and "plan.yaml" in err and "line 2" in err and "contains it" in err, err
    _nothing_written(workdir)


def test_nesting_deeper_than_the_bound__exits_2(capsys, workdir, adult_csvs):
    plan = workdir / "plan.yaml"
    plan.write_text(_plan_text(adult_csvs).replace("seed: 0", "seed: " + "[" * 100 + "]" * 100), encoding="utf-8")
    code, err = _audit(capsys, plan)
    assert code == 2 and "plan.yaml" in err and "seed" in err and "levels deep" in err, err


def test_anchors_aliases_and_merge_keys_within_the_bounds_still_load(tmp_path):
    from govssl._yaml import read_yaml_mapping
    from govssl.errors import ConfigError

    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nother: {<<: *b, y: 3}\nlist: [*b, *b]\n", encoding="utf-8")
    data = read_yaml_mapping(path, ConfigError, "plan")
    assert data == {"base": {"x": 1, "y": 2}, "other": {"x": 1, "y": 3}, "list": [{"x": 1, "y": 2}] * 2}


# ------------------------------------------------------------------------------------ duplicate keys


def test_duplicate_key__exits_2_naming_the_key_and_both_lines(capsys, workdir, adult_csvs):
    text = _plan_text(adult_csvs, dp=True)
    text = text.replace("  baseline: false\n", "  baseline: false\n  dp:\n    enabled: false\n")
    plan = workdir / "plan.yaml"
    plan.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    first, second = 1 + lines.index("  dp:"), len(lines) - lines[::-1].index("  dp:")
    code, err = _audit(capsys, plan)
    assert code == 2, err
    assert "plan.yaml" in err and "duplicate key 'dp'" in err, err
    assert f"line {second}" in err and f"first at line {first}" in err, err
    _nothing_written(workdir)


def test_duplicate_key_in_a_policy_and_in_attestations__exits_2(capsys, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text((REPO / "policies" / "default.yaml").read_text() + "\nversion: '9'\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "policy", "validate", str(policy))
    assert code == 2 and "policy.yaml" in err and "duplicate key 'version'" in err, err

    from govssl.errors import ConfigError
    from govssl.plan import load_attestations

    attestations = tmp_path / "att.yaml"
    attestations.write_text("- {subcategory: GOVERN 1.1, by: a, by: b, date: 2025-01-01, statement: s}\n")
    with pytest.raises(ConfigError, match="att.yaml.*duplicate key 'by'"):
        load_attestations(attestations)


# ------------------------------------------------------------------------------------ plan bounds


@pytest.mark.parametrize("key, value, expected", [
    ("seed", -1, "greater than or equal to 0"),
    ("seed", 2**80, "less than or equal to 4294967295"),
    ("training.encoder.hidden_dims", [50_000_000], "from 1 to 65,536"),
    ("training.encoder.channels", [10**9], "from 1 to 4,096"),
    ("training.pretrain.projection_dim", 10**9, "less than or equal to 65536"),
    ("training.dp.target_epsilon", float("inf"), "finite"),
    ("training.dp.target_epsilon", 1e6, "less than or equal to 100"),
    ("training.dp.noise_multiplier", float("inf"), "finite"),
    ("training.dp.max_grad_norm", float("nan"), "finite"),
    ("training.finetune.lr", float("inf"), "finite"),
    ("training.pretrain.lr", float("nan"), "finite"),
])
def test_plan_value_out_of_bounds__exits_2_naming_the_key(key, value, expected, capsys, workdir, adult_csvs,
                                                          write_plan):
    data = fast_plan_data(*adult_csvs)
    *parents, leaf = key.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    started = time.perf_counter()
    code, err = _audit(capsys, write_plan(data))
    assert code == 2, err
    assert f"plan.yaml: {key}: " in err and expected in err, err
    assert time.perf_counter() - started < 5
    _nothing_written(workdir)


def test_a_model_over_the_parameter_limit__exits_2_before_anything_is_built(capsys, workdir, adult_csvs,
                                                                           write_plan, monkeypatch):
    from govssl.train import models

    built = []
    monkeypatch.setattr(models, "build_encoder", lambda *a, **k: built.append(a))
    data = fast_plan_data(*adult_csvs)
    data["training"]["encoder"]["hidden_dims"] = [60_000, 60_000]
    code, err = _audit(capsys, write_plan(data))
    assert code == 2, err
    assert "plan.yaml: training.encoder.hidden_dims: the model would have 3,6" in err, err
    assert "the limit is 10,000,000" in err, err
    assert built == []
    _nothing_written(workdir)


def test_parameter_count__equals_the_built_models():
    from govssl.train.models import Architecture, build_classifier, parameter_count

    for arch in (
        Architecture(in_dim=108, hidden_dims=[64, 32], dropout=0.1, n_classes=2),
        Architecture(kind="cnn", in_shape=[3, 13, 9], channels=[5, 6, 7], hidden_dims=[11], dropout=0.0, n_classes=4),
    ):
        model = build_classifier(arch)
        assert parameter_count(arch) == sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------ data files


def test_corrupt_compressed_csv__exits_2_naming_the_file(capsys, workdir, adult_csvs, write_plan):
    train, _ = adult_csvs
    packed = gzip.compress(train.read_bytes())
    (workdir / "train.csv.gz").write_bytes(packed[: len(packed) // 2])  # truncated: EOFError inside gzip
    (workdir / "garbled.csv.gz").write_bytes(packed[:10] + b"\x00" * 400)  # zlib.error
    for name in ("train.csv.gz", "garbled.csv.gz"):
        data = fast_plan_data(*adult_csvs)
        data["dataset"].update(path=str(workdir / name), test_path=None)
        code, err = _audit(capsys, write_plan(data))
        assert code == 2, err
        assert f"{name}: cannot read as CSV (gzip-compressed" in err, err
        _nothing_written(workdir)


def test_corrupt_parquet__exits_2_naming_the_file(capsys, workdir, adult_csvs, write_plan):
    frame = pd.read_csv(adult_csvs[0])
    frame.to_parquet(workdir / "train.parquet")
    raw = (workdir / "train.parquet").read_bytes()
    (workdir / "train.parquet").write_bytes(raw[:100] + b"\xff" * 200 + raw[300:])
    data = fast_plan_data(*adult_csvs)
    data["dataset"].update(path=str(workdir / "train.parquet"), test_path=None)
    code, err = _audit(capsys, write_plan(data))
    assert code == 2 and "train.parquet: cannot read as Parquet" in err, err
    _nothing_written(workdir)


def test_symlink_loop_as_the_data_path__exits_2_naming_it(capsys, workdir, adult_csvs, write_plan):
    os.symlink("loop.csv", workdir / "loop.csv")
    data = fast_plan_data(*adult_csvs)
    data["dataset"].update(path="loop.csv", test_path=None)
    code, err = _audit(capsys, write_plan(data))
    assert code == 2, err
    assert "dataset.path" in err and "loop.csv" in err and "loop of links" in err, err
    _nothing_written(workdir)


def test_symlink_loop_reached_by_the_loader__names_the_os_reason(tmp_path):
    from govssl.data import read_table
    from govssl.errors import DataError

    os.symlink("loop.csv", tmp_path / "loop.csv")
    with pytest.raises(DataError, match=r"loop\.csv: cannot open the data file: Too many levels of symbolic links"):
        read_table(tmp_path / "loop.csv")


def _npz_with_header(path: Path, shape: tuple, payload: bytes) -> None:
    """An NPZ whose 'x' member's .npy header declares ``shape`` of float64 but holds ``payload``."""
    header = io.BytesIO()  # magic string, version 1.0, then the header dict
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    labels = io.BytesIO()
    np.save(labels, np.arange(10) % 2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + payload)
        archive.writestr("y.npy", labels.getvalue())


def test_npz_header_claiming_10_to_the_11_floats__exits_2_without_allocating(capsys, workdir, write_plan):
    _npz_with_header(workdir / "liar.npz", (10**11,), b"\x00" * 800)
    assert (workdir / "liar.npz").stat().st_size < 2_000
    data = {"name": "npz", "dataset": {"path": "liar.npz"},
            "training": {"baseline": False, "pretrain": {"method": "rotation"}},
            "checks": {"performance": {}}, "policy": str(REPO / "policies" / "default.yaml")}
    code, err = _audit(capsys, write_plan(data))
    assert code == 2, err
    assert "liar.npz: array 'x' declares shape (100000000000,) of float64 (800,000,000,000 bytes)" in err, err
    assert "archive holds 800 bytes" in err, err
    _nothing_written(workdir)


def test_npz_loader__refuses_oversized_and_object_arrays_and_still_reads_good_ones(tmp_path, monkeypatch):
    from govssl.data import _images
    from govssl.errors import DataError

    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=np.random.default_rng(0).random((12, 4, 4)), y=np.arange(12) % 3)
    x, y, classes, _ = _images.load_npz(good)
    assert x.shape == (12, 1, 4, 4) and classes == ["0", "1", "2"]

    monkeypatch.setattr(_images, "MAX_NPZ_VALUES", 100)
    with pytest.raises(DataError, match=r"good\.npz: array 'x' has 192 values .* at most 100 are loaded"):
        _images.load_npz(good)
    monkeypatch.undo()

    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([{"a": 1}] * 3, dtype=object), y=np.arange(3))
    with pytest.raises(DataError, match="objects.npz: array 'x' holds Python objects"):
        _images.load_npz(objects)


def test_values_near_the_float64_limit__standardise_to_finite_features(tmp_path, adult_csvs):
    """A column of +-1e308: its mean and deviation are computed without overflow (the chosen fix)."""
    from govssl.data import load
    from govssl.plan import AuditPlan

    frame = pd.read_csv(adult_csvs[0])
    frame["huge"] = np.where(np.arange(len(frame)) % 2 == 0, 1e308, -1e308)
    frame.loc[:10, "huge"] = 1.5e308
    frame.to_csv(tmp_path / "huge.csv", index=False)
    data = fast_plan_data(*adult_csvs)
    data["dataset"].update(path=str(tmp_path / "huge.csv"), test_path=None)
    dataset = load(AuditPlan.model_validate(data))
    column = dataset.encoder.feature_names.index("huge")
    assert np.isfinite(dataset.X_train).all() and np.isfinite(dataset.X_test).all()
    assert abs(float(dataset.X_train[:, column].mean())) < 0.1
    assert float(dataset.X_train[:, column].std()) == pytest.approx(1.0, abs=0.05)


def test_ordinary_columns__standardise_as_the_direct_formula():
    from govssl.data._table import TableEncoder

    values = np.random.default_rng(3).normal(40.0, 12.0, size=1000)
    frame = pd.DataFrame({"age": values})
    X = TableEncoder(["age"], []).fit(frame).transform(frame)
    np.testing.assert_array_equal(X[:, 0], ((values - values.mean()) / values.std()).astype(np.float32))


def test_a_test_value_beyond_float32_after_standardising__exits_2_naming_file_and_column(
        capsys, workdir, adult_csvs, write_plan):
    test = pd.read_csv(adult_csvs[1])
    test["age"] = test["age"].astype(float)
    test.loc[5, "age"] = 1e300
    test.to_csv(workdir / "test.csv", index=False)
    data = fast_plan_data(*adult_csvs)
    data["dataset"]["test_path"] = str(workdir / "test.csv")
    code, err = _audit(capsys, write_plan(data))
    assert code == 2, err
    assert "test.csv: numeric column(s) 'age' of the test rows do not standardise to finite numbers" in err, err
    _nothing_written(workdir)


@pytest.mark.slow
def test_audit_with_a_column_of_1e308__measures_performance(capsys, workdir, adult_csvs, write_plan):
    frame = pd.read_csv(adult_csvs[0])
    frame["huge"] = np.where(np.arange(len(frame)) % 2 == 0, 1e308, -1e308)
    frame.to_csv(workdir / "huge.csv", index=False)
    data = fast_plan_data(*adult_csvs)
    data["dataset"].update(path=str(workdir / "huge.csv"), test_path=None)
    code, out, err = run_cli(capsys, "audit", str(write_plan(data)), "--quiet", "--json")
    run = json.loads(out)
    assert code == run["decision"]["exit_code"], err
    performance = next(r for r in run["checks"] if r["check"] == "performance")
    assert performance["status"] == "measured", performance


# ------------------------------------------------------------------------------------ the CLI itself


def test_an_eof_error_escaping_a_command__is_an_internal_error_not_an_interrupt(capsys, tmp_path, monkeypatch):
    import govssl.policy

    monkeypatch.chdir(tmp_path)

    def eof(path):
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    monkeypatch.setattr(govssl.policy, "load_policy", eof)
    code, _, err = run_cli(capsys, "policy", "validate", "x.yaml")
    assert code == 4, err
    assert "internal error: EOFError" in err and "aborted" not in err and "interrupted" not in err
    log = next((tmp_path / ".govssl" / "logs").iterdir())
    assert "EOFError" in log.read_text()


def test_ctrl_c__is_130(capsys, monkeypatch):
    import govssl.policy

    def interrupt(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(govssl.policy, "load_policy", interrupt)
    code, _, err = run_cli(capsys, "policy", "validate", "x.yaml")
    assert code == 130 and "interrupted" in err


def test_markup_in_a_policy_name__is_printed_literally(capsys, tmp_path):
    policy = yaml.safe_load((REPO / "policies" / "default.yaml").read_text())
    policy["policy"] = "a[/]b[bold]x"
    policy["rules"][0]["id"] = "rule[/]one"
    (tmp_path / "in[bold]").mkdir()
    path = tmp_path / "in[bold]" / "p[red]q.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    code, out, err = run_cli(capsys, "policy", "validate", str(path))
    assert code == 0, err
    assert "policy 'a[/]b[bold]x'" in out and "in[bold]/p[red]q.yaml" in out
    code, out, err = run_cli(capsys, "policy", "explain", str(path))
    assert code == 0, err
    assert "policy a[/]b[bold]x v" in out and "rule[/]one" in out


def test_messages_quote_a_long_value_cut_short(capsys, workdir, adult_csvs, write_plan):
    data = fast_plan_data(*adult_csvs)
    data["seed"] = "9" * 100_000 + "x"
    code, err = _audit(capsys, write_plan(data))
    assert code == 2
    line = next(x for x in err.splitlines() if "seed" in x)
    assert len(line) < 600 and re.search(r"got '9+\.\.\.9+x'", line), line
