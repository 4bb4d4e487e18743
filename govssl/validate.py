"""`govssl plan validate`: every problem of a plan, its policy and its data's header, at once.

Nothing is trained and nothing is stored: the plan is loaded as an audit would load it, the
policy too, and of the data only the header is read, to see that the columns the plan names
exist. Problems make the plan invalid; warnings (such as a policy none of whose rules reads a
check the plan runs, which would make every audit of the plan blocked) do not.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from govssl._yaml import read_yaml_mapping
from govssl.errors import ConfigError, GovsslError

__all__ = ["PlanValidation", "validate_plan", "read_header"]

# dataset keys that name columns of a table
COLUMN_KEYS = ("sensitive", "drop", "categorical", "personal_data")


@dataclass
class PlanValidation:
    """What `plan validate` found: ``problems`` (invalid), ``warnings`` and a short ``summary``."""

    path: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def read_header(path: Path) -> list[str]:
    """The column names of a CSV or Parquet file, read from its header (or schema) only."""
    suffix = "".join(path.suffixes[-2:]).lower()
    if not path.is_file():
        raise ConfigError(f"{path}: data file not found")
    if suffix.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception as exc:  # pyarrow raises its own error types for a file that is not Parquet
            raise ConfigError(f"{path}: cannot read as Parquet: {exc}") from None
    else:
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:  # as pandas reads it: a BOM is not a column name
                names = next(csv.reader(fh, skipinitialspace=True), None)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ConfigError(f"{path}: cannot read as CSV: {exc}") from None
        if not names:
            raise ConfigError(f"{path}: the file is empty (no header, no rows)")
    names = [str(n).strip() for n in names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: duplicate column name(s): {', '.join(dupes)}")
    return names


def _header_problems(plan, dataset) -> tuple[list[str], str]:
    """(problems, one summary line) for the columns the plan's dataset section names."""
    if dataset.is_images(plan):
        where = dataset.builtin or plan.resolve(dataset.path)
        return [], f"dataset: images ({where}); no columns to check"
    if dataset.builtin is not None:
        from govssl.data._builtin import ADULT, ADULT_COLUMNS

        where, columns = f"built-in dataset '{dataset.builtin}'", list(ADULT_COLUMNS)
        target = dataset.target or ADULT.target
        sensitive = list(dataset.sensitive if dataset.sensitive is not None else ADULT.sensitive)
    else:
        path = plan.resolve(dataset.path)
        where, target, sensitive = str(path), dataset.target, list(dataset.sensitive or [])
        try:
            columns = read_header(path)
        except ConfigError as exc:
            return [str(exc)], ""
        if dataset.test_path is not None:
            test_path = plan.resolve(dataset.test_path)
            try:
                differ = sorted(set(columns) ^ set(read_header(test_path)))
            except ConfigError as exc:
                return [str(exc)], ""
            if differ:
                return [f"{test_path}: columns differ from {path}: {', '.join(differ)}"], ""
    problems = []
    known = set(columns)
    shown = ", ".join(columns)
    if target and target not in known:
        problems.append(f"{where}: target column '{target}' (dataset.target) not found; columns: {shown}")
    named = {"sensitive": sensitive, **{k: list(getattr(dataset, k)) for k in COLUMN_KEYS if k != "sensitive"}}
    for key, cols in named.items():
        for i, col in enumerate(cols):
            if col not in known:
                problems.append(f"{where}: column '{col}' (dataset.{key}[{i}]) not found; columns: {shown}")
    summary = (f"dataset: {where}, {len(columns)} columns; target {target}"
               + (f"; sensitive {', '.join(sensitive)}" if sensitive else "; no sensitive features"))
    return problems, summary


def _policy_path(path: Path, raw: dict, plan, policy_path: Path | None) -> Path | None:
    """The policy an audit would decide with, or None when the plan's own report covers it."""
    if policy_path is not None:
        return policy_path
    from govssl.plan import AuditPlan

    stub = plan or AuditPlan.model_construct(policy=raw.get("policy", "default"), source_path=path.resolve())
    if not isinstance(stub.policy, str):
        return None  # the plan's schema reports it
    try:
        found = stub.policy_path()
    except KeyError:
        return None  # an unknown built-in policy: load_plan reports it
    return found if found.is_file() else None  # a missing file: load_plan reports it


def validate_plan(path: str | Path, policy_path: str | Path | None = None) -> PlanValidation:
    """Load the plan, its policy (or ``policy_path``) and its data header; collect every problem.

    A plan file that cannot be read at all (missing, not YAML) raises ConfigError at once.
    """
    from govssl.plan import AuditPlan, DatasetSpec, load_plan
    from govssl.policy import load_policy

    path = Path(path)
    report = PlanValidation(path)
    raw = read_yaml_mapping(path, ConfigError, "plan")
    plan = None
    try:
        plan = load_plan(path)
    except GovsslError as exc:
        report.problems += exc.problems or [str(exc)]

    policy = None
    chosen = _policy_path(path, raw, plan, Path(policy_path) if policy_path is not None else None)
    if chosen is not None:
        try:
            policy = load_policy(chosen)
        except GovsslError as exc:
            report.problems += exc.problems or [str(exc)]

    # the data header: with the plan's dataset section even when another part of the plan is invalid
    dataset = plan.dataset if plan is not None else None
    if dataset is None and isinstance(raw.get("dataset"), dict):
        try:
            dataset = DatasetSpec.model_validate(raw["dataset"])
        except ValidationError:  # load_plan has reported the section's problems
            dataset = None
    if dataset is not None:
        holder = plan or AuditPlan.model_construct(dataset=dataset, source_path=path.resolve())
        missing_file = dataset.path is not None and not holder.resolve(dataset.path).exists()
        if not missing_file:  # load_plan reports a missing data file
            problems, line = _header_problems(holder, dataset)
            report.problems += problems
            if line:
                report.summary.append(line)

    checks = plan.checks if plan is not None else raw.get("checks") if isinstance(raw.get("checks"), dict) else None
    if plan is not None:
        report.summary.append(f"checks: {', '.join(checks) or 'none'}")
    if policy is not None and checks is not None:
        reading = [r for r in policy.rules if r.check in checks]
        if not reading:
            report.warnings.append(
                f"{policy.path}: no rule of policy '{policy.name}' reads a check the plan runs "
                f"({', '.join(checks) or 'none'}); its rules read {', '.join(sorted({r.check for r in policy.rules}))}. "
                f"An audit of this plan would be blocked: no rule would be evaluated"
            )
        blocking = [r for r in reading if r.severity == "block"]
        report.summary.append(
            f"policy: {policy.name} v{policy.version}, {len(policy.rules)} rule(s); {len(reading)} read "
            f"the checks the plan runs ({len(blocking)} blocking)"
        )
    return report
