"""One production batch against the run's reference profile: the measurements of `govssl monitor`.

Every p-value of the drift tests (one per feature, the calibrated scores, the embeddings, the
out-of-distribution share, one per sensitive feature's group mix) forms one family, adjusted
with Holm's method: a rule ``drift_p_value >= 0.05`` on every one of them holds the chance that a
batch without any shift raises any alarm at 5% (family-wise error rate), whatever the tests'
dependence. The raw p-value is in each measurement's details.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from govssl.data._table import OTHER
from govssl.errors import DataError
from govssl.evidence import CheckResult, Measurement
from govssl.monitor import _stats
from govssl.monitor._profile import Profile, embed_and_score

__all__ = ["check_batch", "measure", "encoder_of", "MMD_ROWS", "OOD_ROWS", "MMD_PERMUTATIONS", "MAX_LABELLED"]

MMD_ROWS = 1_000  # batch rows (a seeded sample) compared with the 1,000 reference embeddings
MMD_PERMUTATIONS = 500
OOD_ROWS = 50_000  # batch rows (a seeded sample) whose distance to the reference is measured
MAX_LABELLED = 50_000  # realised performance and fairness on at most this many labelled rows (a sample)
CHUNK = 65_536
LEVEL = 0.95


def _shown(values) -> str:
    values = list(values)
    return ", ".join(values[:10]) + (f" and {len(values) - 10} more" if len(values) > 10 else "")


def check_batch(path, frame: pd.DataFrame, profile: Profile, labels: str | None) -> None:
    """Raise DataError naming every missing, extra or retyped column of the batch, every
    feature without a value, and bad labels. Unseen category levels are not an error."""
    meta = profile.meta
    expected = meta["columns"]
    features = [*meta["numeric"], *meta["categorical"]]
    required = list(dict.fromkeys([*features, *meta["sensitive"]]))
    present = list(frame.columns)
    problems = []
    missing = [c for c in required if c not in frame.columns]
    if missing:
        problems.append(f"missing column(s): {_shown(missing)} (the model's features and sensitive columns "
                        f"are required)")
    extra = [c for c in present if c not in expected and c != labels]
    if extra:
        problems.append(f"extra column(s) not in the audited data: {_shown(extra)}")
    if labels is not None and labels not in frame.columns:
        problems.append(f"--labels: no column '{labels}' in the batch")
    for col in required:
        if col not in frame.columns:
            continue
        series = frame[col]
        if series.isna().all():
            problems.append(f"column '{col}' holds only missing values")
            continue
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        was = expected.get(col)
        if col in meta["numeric"] and not numeric:
            bad = series[pd.to_numeric(series, errors="coerce").isna() & series.notna()]
            example = f" (e.g. {str(bad.iloc[0])[:40]!r})" if len(bad) else ""
            problems.append(f"column '{col}' is retyped: numbers in the audited data, text here{example}")
        elif col in meta["categorical"] and was == "text" and numeric:
            problems.append(f"column '{col}' is retyped: text in the audited data, numbers here")
        elif col in meta["numeric"]:
            values = series.to_numpy(dtype=np.float64)
            bad = ~np.isfinite(values)
            if bad.any():
                row = int(np.flatnonzero(bad)[0]) + 1
                problems.append(f"numeric column '{col}' has {int(bad.sum())} missing or infinite value(s) "
                                f"(first in data row {row}); the model cannot score them")
    if labels is not None and labels in frame.columns:
        values = frame[labels]
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0]) + 1
            problems.append(f"--labels column '{labels}' has {int(values.isna().sum())} missing value(s) "
                            f"(first in data row {row})")
        else:
            known = set(meta["classes"])
            unknown = sorted(set(values.astype(str).str.strip()) - known)
            if unknown:
                problems.append(f"--labels column '{labels}' holds value(s) {_shown(repr(v) for v in unknown)} "
                                f"that are not classes of the audited target ({', '.join(map(repr, meta['classes']))})")
    if problems:
        raise DataError(f"{path}: the batch does not match the audited data ({len(problems)} problem(s))", problems)


def encoder_of(meta: dict):
    """The model's input encoding, rebuilt from the profile (no training rows needed)."""
    from govssl.data._table import CategoricalColumn, NumericColumn, TableEncoder

    enc = meta["encoder"]
    encoder = TableEncoder(meta["numeric"], meta["categorical"], levels=enc["declared_levels"],
                           min_rows=enc["min_rows"])
    encoder.numeric = [NumericColumn(c["name"], bool(c["log"]), float(c["mean"]), float(c["std"]), float("nan"),
                                     float("nan")) for c in enc["numeric"]]
    encoder.categorical = [CategoricalColumn(c["name"], tuple(c["levels"])) for c in enc["categorical"]]
    start = 0
    for c in encoder.numeric:
        encoder.groups.append((c.name, slice(start, start + 1)))
        encoder.feature_names.append(c.name)
        start += 1
    for c in encoder.categorical:
        encoder.groups.append((c.name, slice(start, start + len(c.levels))))
        encoder.feature_names.extend(f"{c.name}={level}" for level in c.levels)
        start += len(c.levels)
    return encoder


@dataclass
class _Scored:
    proba: np.ndarray
    sample: np.ndarray  # batch rows whose embeddings were kept (random order)
    embeds: np.ndarray  # their embeddings, in the order of ``sample``


def _score(model, encoder, frame: pd.DataFrame, seed: int) -> _Scored:
    n = len(frame)
    rng = np.random.default_rng(seed)
    sample = rng.permutation(n)[:OOD_ROWS]
    ordered = np.sort(sample)
    probs, embeds = [], []
    for start in range(0, n, CHUNK):
        X = encoder.transform(frame.iloc[start:start + CHUNK])
        if not np.isfinite(X).all():
            bad = encoder.nonfinite(X)
            raise DataError(f"numeric column(s) {', '.join(map(repr, bad))} do not standardise to finite numbers: "
                            "their values lie far outside the audited data's range")
        local = ordered[(ordered >= start) & (ordered < start + len(X))] - start
        p, e = embed_and_score(model, X, local)
        probs.append(p)
        embeds.append(e)
    proba = np.concatenate(probs)
    emb = np.concatenate(embeds)
    position = {row: i for i, row in enumerate(ordered.tolist())}
    return _Scored(proba, sample, emb[[position[r] for r in sample.tolist()]])


def _feature_drift(meta: dict, frame: pd.DataFrame) -> list[tuple[Measurement, float]]:
    """(measurement without its adjusted p-value yet, raw p-value) per feature, plus effect sizes."""
    from govssl.data import as_category_strings

    out = []
    for name in meta["numeric"]:
        ref = meta["features"][name]
        x = frame[name].to_numpy(dtype=np.float64)
        d, p = _stats.ks_weighted(x, np.asarray(ref["values"]), np.asarray(ref["counts"]))
        edges = np.asarray(ref["edges"])
        batch_bins = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
        ref_bins = np.asarray(ref["bin_counts"], dtype=np.float64)
        details = {"test": "kolmogorov-smirnov", "statistic": d, "reference_rows": ref["n"],
                   "reference_sketch": ref["sketch"]}
        out.append((name, "numeric", p, details, ref_bins, batch_bins, 0.0))
    for name in meta["categorical"]:
        ref = meta["features"][name]
        values = as_category_strings(frame[name])
        counts = values.value_counts()
        # The reference counts the model's levels, with OTHER for every value outside them (the
        # profile names no rare value). A batch's values outside the levels go to the same OTHER
        # bin (the model reads them so), or to a bin of their own when the reference had none.
        levels = [level for level in ref["levels"] if level != OTHER]
        ref_counts = np.array([c for level, c in zip(ref["levels"], ref["counts"]) if level != OTHER]
                              + [sum(c for level, c in zip(ref["levels"], ref["counts"]) if level == OTHER)],
                              dtype=np.float64)
        batch_counts = np.array([int(counts.get(level, 0)) for level in levels] + [0], dtype=np.float64)
        unseen = counts[~counts.index.isin(levels)]
        batch_counts[-1] = float(unseen.sum())
        statistic, p, dof = _stats.chi2_counts(ref_counts, batch_counts)
        # beyond the share the reference itself held outside the model's levels; the values are
        # counted, never stored (they may be a person's name or a case number)
        ref_outside = ref_counts[-1] / max(1.0, ref_counts.sum())
        excess = max(0.0, float(unseen.sum()) / len(frame) - ref_outside)
        details = {"test": "chi-squared", "statistic": statistic, "dof": dof, "reference_rows": ref["n"],
                   "unseen_levels": int(len(unseen)), "unseen_rows": int(unseen.sum()),
                   "reference_outside_share": float(ref_outside)}
        out.append((name, "categorical", p, details, ref_counts, batch_counts, excess))
    return out


def _ood(meta: dict, profile: Profile, embeds: np.ndarray) -> tuple[float, float, int, int]:
    e = meta["embedding"]
    dist = _stats.nearest_distance(embeds, profile.embed_reference.astype(np.float64))
    beyond = int((dist > e["ood_threshold"]).sum())
    # one-sided Fisher exact test: more batch rows past the threshold than the reference's own
    # held-out rows (which set the threshold at their OOD_QUANTILE)
    table = [[beyond, len(dist) - beyond], [e["holdout_beyond"], e["n_holdout"] - e["holdout_beyond"]]]
    p = float(stats.fisher_exact(table, alternative="greater")[1]) if e["n_holdout"] else 1.0
    return beyond / max(len(dist), 1), p, beyond, len(dist)


def _cbpe(meta: dict, proba: np.ndarray) -> tuple[float, float, float, dict]:
    """Confidence-based performance estimation (NannyML's CBPE) with the calibration refit on the
    reference: each confidence bin's accuracy on the test split, weighted by the batch's share of
    rows in the bin. The variance adds the batch's own sampling (a Poisson-binomial count of
    correct predictions) and the reference bins' (their accuracy is estimated from finite rows)."""
    from govssl.checks.performance import calibration_bins

    cal = meta["calibration"]
    k = cal["bins"]
    ref_n = np.asarray(cal["counts"], dtype=np.float64)
    ref_k = np.asarray(cal["correct"], dtype=np.float64)
    confidence = proba.max(axis=1)
    batch_n = np.bincount(calibration_bins(confidence, k), minlength=k).astype(np.float64)
    batch_conf = np.bincount(calibration_bins(confidence, k), weights=confidence, minlength=k)
    n = batch_n.sum()
    # a bin the reference never filled: its mean confidence stands in, with the widest variance
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(ref_n > 0, ref_k / ref_n, batch_conf / np.maximum(batch_n, 1))
    var_rate = (ref_k + 0.5) * (ref_n - ref_k + 0.5) / (ref_n + 1) ** 2  # Jeffreys-smoothed p(1-p)
    share = batch_n / n
    estimate = float(np.sum(share * acc))
    var = float(np.sum(batch_n * var_rate) / n ** 2 + np.sum(share ** 2 * var_rate / np.maximum(ref_n, 1)))
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    half = z * np.sqrt(var)
    low, high = max(0.0, estimate - half), min(1.0, estimate + half)
    empty = int(((ref_n == 0) & (batch_n > 0)).sum())
    return estimate, low, high, {"method": "CBPE, confidence bins calibrated on the reference",
                                 "bins": k, "confidence": LEVEL, "interval": "normal",
                                 "bins_without_reference": empty}


def measure(profile: Profile, model, frame: pd.DataFrame, labels: str | None, seed: int,
            check_params: dict | None = None) -> list[CheckResult]:
    """Every monitoring measurement of ``frame`` (already checked by :func:`check_batch`)."""
    from govssl.checks._binomial import clopper_pearson
    from govssl.data import as_category_strings

    meta = profile.meta
    n = len(frame)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scored = _score(model, encoder_of(meta), frame, seed)
    timings["scoring"] = time.perf_counter() - t0
    family: list[tuple[str, str, float]] = []  # (check, subject, raw p)
    per_check: dict[str, list[Measurement]] = {}
    pending: dict[tuple[str, str], dict] = {}

    def add(check: str, m: Measurement) -> None:
        per_check.setdefault(check, []).append(m)

    # per-feature drift
    t0 = time.perf_counter()
    for name, kind, p, details, ref_bins, batch_bins, unseen in _feature_drift(meta, frame):
        family.append(("feature_drift", name, p))
        pending[("feature_drift", name)] = {**details, "kind": kind}
        add("feature_drift", Measurement("feature_drift", "statistic", float(details["statistic"]), name, n=n,
                                         details={"test": details["test"]}))
        add("feature_drift", Measurement("feature_drift", "psi", _stats.psi(ref_bins, batch_bins), name, n=n,
                                         details={"bins": int(len(ref_bins))}))
        add("feature_drift", Measurement("feature_drift", "jensen_shannon", _stats.js_distance(ref_bins, batch_bins),
                                         name, n=n, details={"bins": int(len(ref_bins)), "base": 2}))
        if kind == "categorical":
            add("feature_drift", Measurement("feature_drift", "unseen_share", unseen, name, n=n,
                                             details={"levels": details["unseen_levels"],
                                                      "rows": details["unseen_rows"],
                                                      "reference_share": details["reference_outside_share"]}))
    timings["feature_drift"] = time.perf_counter() - t0

    # prediction drift of the calibrated scores
    t0 = time.perf_counter()
    score = scored.proba[:, 1].astype(np.float64)
    ref_values, ref_counts = np.unique(profile.scores.astype(np.float64), return_counts=True)
    d, p = _stats.ks_weighted(score, ref_values, ref_counts)
    family.append(("prediction_drift", "", p))
    pending[("prediction_drift", "")] = {"test": "kolmogorov-smirnov", "statistic": d,
                                         "reference_rows": int(len(profile.scores))}
    edges = np.unique(np.quantile(profile.scores, np.linspace(0, 1, 11)[1:-1]))
    ref_bins = np.bincount(np.searchsorted(edges, profile.scores, side="right"), minlength=len(edges) + 1)
    batch_bins = np.bincount(np.searchsorted(edges, score, side="right"), minlength=len(edges) + 1)
    add("prediction_drift", Measurement("prediction_drift", "statistic", d, "", n=n, details={"test": "kolmogorov-smirnov"}))
    add("prediction_drift", Measurement("prediction_drift", "psi", _stats.psi(ref_bins, batch_bins), "", n=n))
    add("prediction_drift", Measurement("prediction_drift", "mean_score_shift",
                                        float(score.mean() - profile.scores.mean()), "", n=n,
                                        details={"reference_mean": float(profile.scores.mean())}))
    timings["prediction_drift"] = time.perf_counter() - t0

    # multivariate drift of the encoder's embeddings
    t0 = time.perf_counter()
    emb = meta["embedding"]
    mmd_rows = scored.embeds[:MMD_ROWS].astype(np.float64)
    mmd2, p = _stats.mmd_permutation(profile.embed_reference.astype(np.float64), mmd_rows, emb["bandwidth"],
                                     MMD_PERMUTATIONS, seed)
    family.append(("embedding_drift", "", p))
    pending[("embedding_drift", "")] = {"test": "MMD permutation", "kernel": "gaussian",
                                        "bandwidth": emb["bandwidth"], "bandwidth_rule": "median heuristic (reference)",
                                        "permutations": MMD_PERMUTATIONS, "batch_rows": int(len(mmd_rows)),
                                        "reference_rows": int(len(profile.embed_reference))}
    add("embedding_drift", Measurement("embedding_drift", "mmd2", mmd2, "", n=int(len(mmd_rows)),
                                       details={"bandwidth": emb["bandwidth"]}))
    timings["embedding_drift"] = time.perf_counter() - t0

    # out-of-distribution share
    t0 = time.perf_counter()
    share, p, beyond, rows = _ood(meta, profile, scored.embeds)
    family.append(("ood", "", p))
    pending[("ood", "")] = {"test": "fisher exact (one-sided) against the reference hold-out", "rows": rows,
                            "beyond": beyond}
    low, high = clopper_pearson(beyond, rows, LEVEL)
    add("ood", Measurement("ood", "ood_share", share, "", low, high, rows,
                           details={"threshold": emb["ood_threshold"], "quantile": emb["ood_quantile"],
                                    "expected": 1 - emb["ood_quantile"], "interval": "clopper-pearson",
                                    "sampled": rows < n}))
    timings["ood"] = time.perf_counter() - t0

    # group mix and per-group selection rates
    pred = scored.proba.argmax(axis=1)
    for col in meta["sensitive"]:
        ref = meta["groups"][col]
        labels_ = as_category_strings(frame[col]).to_numpy(dtype=object)
        levels = list(ref["levels"])
        unseen = sorted(set(labels_.tolist()) - set(levels))
        all_levels = levels + unseen
        codes = pd.Categorical(labels_, categories=all_levels).codes
        counts = np.bincount(codes, minlength=len(all_levels)).astype(np.float64)
        ref_counts = np.array(ref["counts"] + [0] * len(unseen), dtype=np.float64)
        statistic, p, dof = _stats.chi2_counts(ref_counts, counts)
        family.append(("group_mix", col, p))
        pending[("group_mix", col)] = {"test": "chi-squared", "statistic": statistic, "dof": dof,
                                       "unseen_groups": unseen}
        tv = 0.5 * float(np.abs(counts / n - ref_counts / ref_counts.sum()).sum())
        add("group_mix", Measurement("group_mix", "total_variation", tv, col, n=n))
        selected = np.bincount(codes, weights=pred, minlength=len(all_levels))
        for i, level in enumerate(all_levels):
            group = f"{col}={level}"
            ref_share = ref_counts[i] / ref_counts.sum()
            low, high = clopper_pearson(int(counts[i]), n, LEVEL)
            add("group_mix", Measurement("group_mix", "share", counts[i] / n, group, low, high, n,
                                         details={"attribute": col, "reference": ref_share,
                                                  "interval": "clopper-pearson"}))
            if counts[i]:
                low, high = clopper_pearson(int(selected[i]), int(counts[i]), LEVEL)
                ref_rate = ref["selection_rate"][i] if i < len(levels) else None
                add("group_mix", Measurement("group_mix", "selection_rate", float(selected[i] / counts[i]), group,
                                             low, high, int(counts[i]),
                                             details={"attribute": col, "reference": ref_rate,
                                                      "interval": "clopper-pearson"}))

    # Holm across the whole family of drift tests
    adjusted = _stats.holm([p for _, _, p in family])
    for (check, subject, raw), adj in zip(family, adjusted):
        details = {**pending[(check, subject)], "p_value": raw, "correction": "holm", "family_size": len(family)}
        m = Measurement(check, "drift_p_value", adj, subject, n=n, details=details)
        per_check[check].insert(0, m)

    # estimated (and realised) performance
    est, low, high, details = _cbpe(meta, scored.proba)
    ref_acc = meta["performance"]["accuracy"]
    perf = [
        Measurement("performance_estimate", "estimated_accuracy", est, "", low, high, n, details),
        Measurement("performance_estimate", "estimated_accuracy_drop", ref_acc - est, "", ref_acc - high,
                    ref_acc - low, n, {**details, "reference_accuracy": ref_acc}),
    ]
    results_extra: list[CheckResult] = []
    if labels is not None:
        positive = meta["positive_label"]
        y_all = (frame[labels].astype(str).str.strip() == positive).to_numpy(dtype=np.int64)
        rows = np.arange(n)
        if n > MAX_LABELLED:
            rows = np.sort(np.random.default_rng(seed + 1).permutation(n)[:MAX_LABELLED])
        y, proba = y_all[rows], scored.proba[rows]
        correct = int((proba.argmax(axis=1) == y).sum())
        r_low, r_high = clopper_pearson(correct, len(y), LEVEL)
        realised = correct / len(y)
        perf.append(Measurement("performance_estimate", "realised_accuracy_drop", ref_acc - realised, "",
                                ref_acc - r_high, ref_acc - r_low, int(len(y)),
                                {"interval": "clopper-pearson", "realised_accuracy": realised,
                                 "reference_accuracy": ref_acc, "estimated_accuracy": est,
                                 "labelled_rows_sampled": bool(len(y) < n)}))
        results_extra = _labelled_checks(meta, frame.iloc[rows], y, proba, seed, check_params or {})
    per_check["performance_estimate"] = perf

    order = ["feature_drift", "prediction_drift", "embedding_drift", "ood", "performance_estimate", "group_mix"]
    results = [CheckResult(name, "measured", tuple(per_check[name]), "", timings.get(name, 0.0))
               for name in order if name in per_check]
    return results + results_extra


def _labelled_checks(meta, frame, y, proba, seed, check_params) -> list[CheckResult]:
    """The audit's own performance and fairness checks on the labelled batch, with the run's
    parameters (bootstrap sizes, group minimum), so the figures and intervals are the audit's."""
    from types import SimpleNamespace

    from govssl.checks.base import CheckContext, create_check
    from govssl.data import as_category_strings

    sensitive = pd.DataFrame({c: as_category_strings(frame[c]).to_numpy(dtype=object) for c in meta["sensitive"]})
    dataset = SimpleNamespace(y_test=y, X_test=np.zeros((len(y), 0)), sensitive=tuple(meta["sensitive"]),
                              sensitive_frame=lambda split="test": sensitive)
    model = SimpleNamespace(predict_proba=lambda X: proba)
    ctx = CheckContext(dataset=dataset, train=model, seed=seed, out_dir=None)
    out = []
    for name in ("performance", "fairness"):
        params = check_params.get(name) or {}
        out.append(create_check(name, **params).run(ctx))
    return out
