"""Preflight: what the data holds and what the model would read, measured before any training.

The audit runs load -> preflight -> train -> checks -> decide. Preflight produces one
:class:`~govssl.checks.base.CheckResult` named ``preflight`` (the same records as a check, so
policies, documents and the store handle it alike), measured on the raw file (every column, the
dropped ones included) and on the model's inputs (the columns the encoder reads):

- ``identifier_columns`` / ``identifier_columns_as_input``: columns that single out a row: a
  header naming a record id (``id``, ``person_id``, ``case number``), case-number-like values
  (codes mixing letters and at least four digits), near-unique text values, or an integer row
  counter;
- ``undeclared_personal_data``: columns that look like personal data (names, first and last
  names, e-mail, phone, date of birth, national or record ids; :mod:`govssl.checks._pii`) and
  are neither declared (``dataset.personal_data``) nor dropped (``dataset.drop``);
- ``personal_data_as_input``: personal-data columns the model reads, declared or not;
- ``sensitive_as_input``: sensitive attributes (``dataset.sensitive``) the model reads;
- ``single_feature_auc``: per input, the ROC AUC of that one feature alone for the target on the
  training rows, in its better direction (a post-outcome column scores near 1).

Each count names its columns in ``subject`` (comma-separated) and ``details``; no measurement
holds a value of the data. Rules with ``stage: preflight`` are decided on this result before
training; a failing blocking one ends the audit there (:func:`stop_decision`).

Duplicate headers are not measured: a file whose header row repeats a name stops the audit as
invalid input (:func:`check_header_row`), because pandas would silently rename the second copy
(``score`` -> ``score.1``) and ``dataset.drop: [score]`` would then keep it as a feature.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from govssl.evidence import CheckResult, Measurement
from govssl.errors import DataError

__all__ = [
    "PREFLIGHT", "METRICS", "PreflightStage", "stage_problems", "check_header_row", "excluded_inputs", "spec_problems",
    "run_preflight", "stop_decision", "not_trained_record",
]

PREFLIGHT = "preflight"
METRICS = (
    "identifier_columns", "identifier_columns_as_input", "undeclared_personal_data", "personal_data_as_input",
    "sensitive_as_input", "single_feature_auc",
)
# The AUC against which single_feature_auc states its resolution (details.detectable_difference):
# a feature that alone separates the classes this well is almost surely the outcome in disguise.
LEAKAGE_REFERENCE_AUC = 0.98
NEAR_UNIQUE = 0.95  # share of distinct values among the non-missing ones
MIN_ROWS_FOR_UNIQUE = 20
FOLDS = 5  # categorical features: each row's score is its level's target rate in the other folds


class PreflightStage:
    """What the policy validator needs to know about the preflight stage (its metrics)."""

    name = PREFLIGHT
    metrics = METRICS


def stage_problems(where: str, rule: dict) -> list[str]:
    """A policy rule's stage must match its check: only preflight evidence exists before training."""
    check, stage = rule.get("check"), rule.get("stage", "checks")
    if stage == "preflight" and isinstance(check, str) and check != PREFLIGHT:
        return [f"{where}.stage: a 'stage: preflight' rule is decided before training, when only check "
                f"'{PREFLIGHT}' has measured; check '{check}' needs stage: checks"]
    if check == PREFLIGHT and stage == "checks":
        return [f"{where}.stage: check '{PREFLIGHT}' is measured before training; say stage: preflight"]
    return []


# --------------------------------------------------------------------------- input validation


def check_header_row(path: Path) -> None:
    """Raise DataError naming the file and the header if a CSV's header row repeats a name.

    The header row is read here with the csv module (as the file has it, spaces trimmed), never
    through pandas, which renames a repeated ``x`` to ``x.1`` without a word.
    """
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith((".parquet", ".pq")):
        return  # Parquet keeps its names; read_table compares them after reading
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # read_table reports an unreadable file with pandas' own words
    names = [h.strip() for h in header]
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(names, start=1):
        positions.setdefault(name, []).append(i)
    repeated = {name: cols for name, cols in positions.items() if len(cols) > 1}
    if repeated:
        shown = "; ".join(f"'{name}' (columns {', '.join(map(str, cols))})" for name, cols in repeated.items())
        raise DataError(f"{path}: duplicate header(s) in the header row: {shown}; every column needs its own "
                        f"name (rename or remove the copies)")


def excluded_inputs(spec, sensitive: list[str]) -> list[str]:
    """Columns that are not model inputs: ``dataset.drop``, declared personal data (unless listed
    under ``personal_data_as_input``) and, with ``sensitive_as_input: false``, the sensitive
    attributes (which are still audited)."""
    out = list(spec.drop)
    allowed = set(spec.personal_data_as_input)
    out += [c for c in spec.personal_data if c not in allowed]
    if not spec.sensitive_as_input:
        out += list(sensitive)
    return list(dict.fromkeys(out))


def spec_problems(where: str, frame: pd.DataFrame, spec, target: str) -> list[str]:
    """Columns named by dataset.personal_data, personal_data_as_input and levels that the data lacks."""
    problems = []
    columns = set(frame.columns)
    for key in ("personal_data", "personal_data_as_input"):
        for i, col in enumerate(getattr(spec, key)):
            if col not in columns:
                problems.append(f"{where}: column '{col}' (dataset.{key}[{i}]) not found")
    for col in spec.levels:
        if col not in columns:
            problems.append(f"{where}: column '{col}' (dataset.levels.{col}) not found")
        elif col == target:
            problems.append(f"{where}: dataset.levels.{col}: '{col}' is the target, not a feature")
    return problems


# --------------------------------------------------------------------------- measurements


def _identifier_reasons(column: str, series: pd.Series, sample: int, seed: int) -> list[str]:
    from govssl.checks._pii import header_kinds, is_case_number

    reasons = []
    if "record_id" in header_kinds(column):
        reasons.append("header names a record id")
    values = series.dropna()
    if pd.api.types.is_float_dtype(series) or pd.api.types.is_bool_dtype(series) or len(values) < MIN_ROWS_FOR_UNIQUE:
        return reasons
    distinct = values.nunique() / len(values)
    if pd.api.types.is_integer_dtype(series):
        span = int(values.max()) - int(values.min()) + 1
        if distinct >= NEAR_UNIQUE and span <= 1.05 * len(values):
            reasons.append(f"integer row counter ({distinct:.1%} distinct, consecutive range)")
        return reasons
    if distinct >= NEAR_UNIQUE:
        reasons.append(f"near-unique values ({distinct:.1%} distinct)")
    # the sample is drawn before the values become text: the same rows, without a string per row
    picked = values.sample(sample, random_state=seed) if len(values) > sample else values
    picked = picked.astype(str).str.strip()
    share = float(picked.map(is_case_number).mean()) if len(picked) else 0.0
    if share >= 0.5 and distinct >= 0.5:
        reasons.append(f"case-number-like codes ({share:.0%} of a sample of {len(picked)})")
    return reasons


def _hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC (Hanley and McNeil 1982, exponential approximation)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _categorical_scores(values: pd.Series, y: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold target rate of each row's level: a unique value (a name) gets the base rate,
    so near-unique columns do not look predictive just by memorising their rows."""
    from govssl.data import as_category_strings
    from govssl.data._table import _category_codes

    if isinstance(values.dtype, pd.CategoricalDtype):  # one code per distinct level: no string per row
        codes, _ = _category_codes(values)
    else:
        codes = as_category_strings(values).to_numpy()
    folds = np.random.default_rng(seed).integers(0, FOLDS, size=len(codes))
    scores = np.empty(len(codes), dtype=np.float64)
    for k in range(FOLDS):
        inside, outside = folds == k, folds != k
        if not inside.any():
            continue
        rest = pd.DataFrame({"level": codes[outside], "y": y[outside]})
        rates = rest.groupby("level")["y"].mean()
        base = float(y[outside].mean()) if outside.any() else float(y.mean())
        scores[inside] = pd.Series(codes[inside]).map(rates).fillna(base).to_numpy(dtype=np.float64)
    return scores


def _single_feature_auc(name: str, series: pd.Series, y: np.ndarray, categorical: bool, seed: int) -> Measurement:
    from sklearn.metrics import roc_auc_score

    scores = (_categorical_scores(series, y, seed) if categorical
              else series.to_numpy(dtype=np.float64))
    raw = float(roc_auc_score(y, scores))
    auc = max(raw, 1.0 - raw)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    se = _hanley_mcneil_se(auc, n_pos, n_neg)
    resolution = 1.96 * _hanley_mcneil_se(LEAKAGE_REFERENCE_AUC, n_pos, n_neg)
    if categorical:
        how = f"target rate of the row's category in the other {FOLDS - 1} of {FOLDS} folds of the training rows"
        direction = "levels with a higher target rate score higher"
    else:
        how = "the feature's value as the score"
        direction = ("higher values mean the positive class" if raw >= 0.5
                     else "lower values mean the positive class")
    return Measurement(
        PREFLIGHT, "single_feature_auc", auc, name,
        ci_low=max(0.5, auc - 1.96 * se), ci_high=min(1.0, auc + 1.96 * se), n=len(y),
        details={
            "score": how, "direction": direction, "n_positive": n_pos, "n_negative": n_neg,
            "interval": "Hanley-McNeil standard error, 95%",
            "detectable_difference": round(resolution, 4),
            "power": (f"with {n_pos} positive and {n_neg} negative training rows an AUC differs "
                      f"detectably (95%) from {LEAKAGE_REFERENCE_AUC:g} only when it is at least "
                      f"{resolution:.3f} away from it"),
        },
    )


def _count(metric: str, columns: dict[str, object], n: int, **details) -> Measurement:
    names = sorted(columns)
    return Measurement(PREFLIGHT, metric, float(len(names)), ", ".join(names), n=n,
                       details={"columns": {c: columns[c] for c in names}, **details})


def measure(plan, data) -> list[Measurement]:
    """Every preflight measurement of a tabular dataset (``data``: a loaded Dataset)."""
    from govssl.checks._pii import scan_pii

    spec = plan.dataset
    full = pd.concat([data.train, data.test], ignore_index=True)
    raw = full.drop(columns=[data.target])
    inputs = list(data.numeric) + list(data.categorical)
    n = len(full)
    sample, seed = 2000, plan.seed

    identifiers = {c: r for c in raw.columns if (r := _identifier_reasons(str(c), raw[c], sample, seed))}
    found = {c: sorted({h["kind"] for h in hits}) for c, hits in scan_pii(raw, sample=sample, seed=seed).items()}
    declared, dropped = set(spec.personal_data), set(spec.drop)
    undeclared = {c: kinds for c, kinds in found.items() if c not in declared and c not in dropped}
    personal = {**{c: ["declared"] for c in declared}, **found}
    out = [
        _count("identifier_columns", identifiers, n, scope="every column of the data file(s) but the target"),
        _count("identifier_columns_as_input", {c: identifiers[c] for c in inputs if c in identifiers}, n,
               scope="model inputs"),
        _count("undeclared_personal_data", undeclared, n, declared=sorted(declared), dropped=sorted(dropped),
               scope="every column of the data file(s) but the target"),
        _count("personal_data_as_input", {c: personal[c] for c in inputs if c in personal}, n,
               allowed_by_plan=list(spec.personal_data_as_input), scope="model inputs"),
        _count("sensitive_as_input", {c: "sensitive" for c in data.sensitive if c in inputs}, n,
               sensitive=list(data.sensitive), sensitive_as_input=bool(spec.sensitive_as_input)),
    ]
    for name in inputs:
        out.append(_single_feature_auc(name, data.train[name], data.y_train, name in data.categorical, seed))
    return out


def run_preflight(plan, data) -> CheckResult:
    """The ``preflight`` result of a loaded dataset. Image data has no columns: skipped."""
    started = time.perf_counter()
    if data.is_images:
        return CheckResult(PREFLIGHT, "skipped", (), "image data has no columns to screen",
                           time.perf_counter() - started)
    try:
        measurements = tuple(measure(plan, data))
    except Exception as exc:  # evidence too: an errored preflight fails the rules that need it
        return CheckResult(PREFLIGHT, "errored", (), f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    return CheckResult(PREFLIGHT, "measured", measurements, "", time.perf_counter() - started)


# --------------------------------------------------------------------------- the early decision


NOT_REACHED = "not evaluated: the audit ended at preflight (a blocking preflight rule failed); nothing was trained"


def stop_decision(policy, result: CheckResult):
    """The run's Decision if a blocking ``stage: preflight`` rule fails, else None (train on).

    The stopped run's decision holds every rule of the policy: the preflight rules as decided,
    the others ``skipped`` because nothing was trained for them to judge.
    """
    from govssl.policy import Decision, RuleOutcome, decide

    rules = tuple(r for r in policy.rules if r.stage == "preflight")
    if not rules:
        return None
    early = decide(replace(policy, rules=rules), [result])
    if early.passed:
        return None
    decided = {o.rule_id: o for o in early.outcomes}
    outcomes = []
    for rule in policy.rules:
        if rule.id in decided:
            outcomes.append(decided[rule.id])
            continue
        outcomes.append(RuleOutcome(rule_id=rule.id, check=rule.check, metric=rule.metric, severity=rule.severity,
                                    status="skipped", observed=None, subject="", threshold=rule.threshold_text(),
                                    message=NOT_REACHED, rmf=rule.rmf, eu_ai_act=rule.eu_ai_act))
    return Decision(tuple(outcomes))


def not_trained_record(plan):
    """The training record of a run that ended at preflight: no model, no seconds spent."""
    from govssl.records import TrainRecord

    return TrainRecord(
        method="none", finetune_mode="none", label_fraction=0.0, n_pretrain_rows=0, n_labelled_rows=0,
        pretrain_epochs=0, finetune_epochs=0, dp_scope="none", end_to_end_dp=False, dp=None,
        model_path="", model_sha256="", architecture="not trained", n_parameters=0, seed=plan.seed,
        seconds=0.0, pretrain_data="none", trained=False,
    )
