"""After release: monitor (one production batch against a run's reference profile), monitor-report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from govssl.cli._common import (EXIT_BLOCKED, EXIT_OK, _print_measurements, _print_rules, cli, db_option, esc,
                                json_option, out)
from govssl.cli.policy import resolve_policy


def _print_monitoring(result, console) -> None:
    console.print(f"[bold]monitoring[/] {esc(result.monitor_id)}   run {esc(result.run_id)}   model sha256 "
                  f"{result.model_sha256[:16]}…   pack {esc(result.policy_name)} v{result.policy_version}")
    console.print(f"batch {result.batch_path} ({result.n_rows:,} rows, sha256 {result.batch_sha256[:16]}…)"
                  + (f"; labels from column '{result.labels}'" if result.labels else "; no labels"), markup=False)
    _print_measurements(
        console, result.results, "measurements (drift p-values Holm-adjusted across every drift test)",
        # per-group rows and second effect sizes: in --json and the report
        lambda m: (m.check == "fairness" and isinstance(m.details.get("group"), dict))
        or m.metric in ("share", "selection_rate", "statistic", "jensen_shannon"))
    _print_rules(console, result.decision.outcomes, "monitoring rules")
    d = result.decision
    colour = "green" if d.passed else "red"
    tail = f" ({len(d.blockers)} blocking rule(s): {esc(', '.join(o.rule_id for o in d.blockers))})" if d.blockers else ""
    tail += f"; {len(d.warnings)} warning(s)" if d.warnings else ""
    console.print(f"[bold {colour}]monitoring decision: {d.verdict.upper()}[/]{tail}  exit {d.exit_code}  "
                  f"({result.seconds:.1f} s)")


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="The production batch: a CSV or Parquet file with the audited table's columns.")
@click.option("--labels", "labels", metavar="COLUMN", default=None,
              help="The batch's column of true labels: adds realised performance and fairness.")
@click.option("--policy", "policy_path", metavar="FILE_OR_NAME", default=None,
              help="The monitoring pack (a file, or a built-in pack's name; default: the built-in 'monitoring').")
@db_option
@json_option
def monitor(run_id: str, data: Path, labels: str | None, policy_path: str | None, db_url: str | None,
            as_json: bool) -> None:
    """Measure one production batch against the audited run's reference profile (RUN: a run id or
    a unique prefix): feature, score and embedding drift, out-of-distribution share, estimated
    accuracy, group mix, and with --labels realised performance and fairness. Stores the result in
    the run's chain and exits 0 when the monitoring pack passes, 1 when it blocks."""
    from govssl.monitor import run_monitor
    from govssl.policy import builtin_policy_path, load_policy

    pol = load_policy(resolve_policy(policy_path, "--policy") if policy_path else builtin_policy_path("monitoring"))
    result = run_monitor(run_id, data, labels=labels, policy=pol, db_url=db_url)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        _print_monitoring(result, out)
    sys.exit(EXIT_OK if result.decision.passed else EXIT_BLOCKED)


@cli.command("monitor-report")
@click.argument("subject", metavar="MODEL_OR_RUN")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A new folder to write into (default: monitoring-report-<UTC time> in the working folder).")
@click.option("--templates", "template_dir", type=click.Path(path_type=Path), default=None,
              help="A folder whose templates override the shipped ones.")
@db_option
def monitor_report(subject: str, out_dir: Path | None, template_dir: Path | None, db_url: str | None) -> None:
    """Write a Markdown and an HTML report with SVG charts of the monitoring results of a model
    (MODEL_OR_RUN: its sha256, 64 hex digits) or of one run (a run id or unique prefix): drift per
    test, estimated against realised accuracy, per-group selection rates, batch after batch."""
    import re
    from datetime import datetime as _dt, timezone as _tz

    from govssl.errors import ConfigError
    from govssl.monitor._report import write_monitoring_report
    from govssl.store import AuditStore

    store = AuditStore(db_url, read_only=True)
    if re.fullmatch(r"[0-9a-f]{64}", subject):
        results, label = store.monitoring(model_sha256=subject), f"model {subject[:16]}…"
    else:
        (run,), _ = store.read_runs([subject])
        results, label = store.monitoring(run_ids=[run.run_id]), f"run {run.run_id}"
    if not results:
        raise ConfigError(f"MODEL_OR_RUN: {label} has no monitoring results in the store; `govssl monitor RUN "
                          f"--data BATCH` makes one")
    folder = out_dir or Path(f"monitoring-report-{_dt.now(_tz.utc).strftime('%Y%m%dT%H%M%SZ')}")
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"--out: {folder} exists and is not empty; reports go to a new folder")
    if folder.exists():
        folder.rmdir()
    written = write_monitoring_report(results, label, folder, template_dir)
    out.print(f"monitoring report of {label} ({len(results)} batch(es)): "
              + ", ".join(str(p) for p in written), markup=False)
