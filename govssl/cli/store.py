"""Commands that read the audit store: runs, show, report, verify, diff, export."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click
from rich.table import Table

from govssl.cli._common import (
    EXIT_INTEGRITY, EXIT_OK, _effective, _fmt, _print_run, _store_label, cli, db_option, err, esc,
    json_option, out,
)
from govssl.formats import DEFAULT_FORMAT, FORMATS as EXPORT_FORMATS


@cli.command()
@db_option
@json_option
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N runs.")
@click.option("--model", "model_sha256", metavar="SHA256", default=None, help="Only runs of the model with this sha256.")
@click.option("--decision", "verdict", type=click.Choice(["pass", "blocked"]), default=None, help="Only runs with this decision.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]), default=None,
              help="Only runs created at or after this date/time (UTC).")
@click.option("--plan", "plan_name", metavar="NAME", default=None, help="Only runs of the plan with this name.")
def runs(db_url: str | None, as_json: bool, limit: int | None, model_sha256: str | None, verdict: str | None,
         since: datetime | None, plan_name: str | None) -> None:
    """List the audit runs in the store, newest first (filters combine)."""
    from govssl.store import AuditStore

    store = AuditStore(db_url, read_only=True)
    rows = store.find_runs(model_sha256=model_sha256, verdict=verdict, since=since,
                                        plan_name=plan_name, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        filtered = any(v is not None for v in (model_sha256, verdict, since, plan_name))
        if filtered:
            total = len(store.find_runs())
            out.print(f"no run matches the filters; {_store_label(db_url)} holds {total} run(s)", markup=False)
        else:
            out.print(f"no runs in {_store_label(db_url)}", markup=False)
        return
    table = Table(title=f"{len(rows)} run(s) in {_store_label(db_url)}", title_justify="left")
    for col in ("run", "created (UTC)", "plan", "policy", "model sha256", "decision", "blocking", "monitored"):
        table.add_column(col)
    for r in rows:
        colour = "green" if r["verdict"] == "pass" else "red"
        mon = r["monitoring"]
        monitored = f"{mon['count']} (last {mon['last_verdict']} {mon['last_at'][:10]})" if mon["count"] else ""
        table.add_row(esc(r["run_id"]), str(r["created_at"]), esc(r["plan_name"]), esc(r["policy_name"]),
                      (r["model_sha256"] or "")[:16], f"[{colour}]{r['verdict']}[/]", str(r["n_blocking"]),
                      esc(monitored))
    out.print(table)


@cli.command()
@click.argument("run_id")
@db_option
@json_option
def show(run_id: str, db_url: str | None, as_json: bool) -> None:
    """Print one stored run (RUN_ID or a unique prefix of it)."""
    from govssl.store import AuditStore

    store = AuditStore(db_url, read_only=True)
    (run,), waivers = store.read_runs([run_id])
    run = _effective(run, waivers)
    # the model's monitoring results (of this run and of any other audit of the same model), verified
    monitoring = store.monitoring(model_sha256=run.training.model_sha256) if run.training.trained else []
    if as_json:
        click.echo(json.dumps({**run.to_dict(), "monitoring": [_monitoring_line(m) for m in monitoring]},
                              indent=2, default=str))
    else:
        _print_run(run, out)
        _print_monitoring_list(monitoring, out)


def _monitoring_line(m) -> dict:
    """One monitoring result as `show` lists it (the whole result: `govssl monitor --json`)."""
    return {"monitor_id": m.monitor_id, "run_id": m.run_id, "created_at": m.created_at, "batch": m.batch_path,
            "batch_sha256": m.batch_sha256, "rows": m.n_rows, "labels": m.labels or None, "policy": m.policy_name,
            "policy_sha256": m.policy_sha256, "verdict": m.decision.verdict,
            "blocking_rules": [o.rule_id for o in m.decision.blockers]}


def _print_monitoring_list(monitoring, console) -> None:
    if not monitoring:
        console.print("monitoring: none (`govssl monitor RUN --data BATCH` measures a production batch)", markup=False)
        return
    table = Table(title=f"monitoring results of this model ({len(monitoring)})", title_justify="left")
    for col in ("monitoring", "run", "created (UTC)", "batch", "rows", "pack", "decision", "blocking"):
        table.add_column(col)
    for m in monitoring:
        line = _monitoring_line(m)
        colour = "green" if line["verdict"] == "pass" else "red"
        table.add_row(esc(m.monitor_id), esc(m.run_id), esc(m.created_at), esc(Path(m.batch_path).name),
                      f"{m.n_rows:,}", esc(m.policy_name), f"[{colour}]{line['verdict']}[/]",
                      esc(", ".join(line["blocking_rules"])))
    console.print(table)



@cli.command()
@click.argument("run_id")
@click.option("--format", "formats", type=click.Choice(["md", "html", "json", "pdf"]), multiple=True,
              help="Which documents to write (repeatable; default md, html and json). pdf: the model card, "
                   "RMF report, datasheet and EU AI Act Annex IV report as PDF (needs WeasyPrint and the Pango library).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write into (default: a new folder reports/<UTC time>/ in the run's folder); "
                   "a file there that is a stored artifact is never replaced.")
@db_option
def report(run_id: str, formats: tuple[str, ...], out_dir: Path | None, db_url: str | None) -> None:
    """Re-render a stored run's documents from the store alone (current waivers and
    attestations), without retraining. The stored documents are never overwritten: the new
    ones go to a new folder and are recorded in the store as artifacts of the run, with the
    waivers and attestations they reflect. `--format pdf` writes model_card.pdf,
    rmf_report.pdf, datasheet.pdf and annex_iv.pdf: verdict at the top of every page, run id, model sha256 and
    page number at the bottom, the run's charts embedded."""
    import shutil
    from dataclasses import asdict
    from datetime import timezone

    from govssl import reports
    from govssl.errors import ConfigError
    from govssl.store import AuditStore

    store = AuditStore(db_url, create=False)
    (run,), waivers = store.read_runs([run_id])
    run = _effective(run, waivers)
    formats = formats or reports.FORMATS
    names = [name for _, fmt, _, _, name in reports.DOCUMENTS if fmt in formats]
    names += [name for _, name in reports.JSON_DOCUMENTS] if "json" in formats else []
    names += [name for *_, name in reports.PDF_DOCUMENTS] if "pdf" in formats else []
    if "pdf" in formats:
        reports.load_weasyprint()  # a missing library is exit 2 before anything is written
    if out_dir is None:  # the run's folder: its form was checked on reading
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = (Path(run.out_dir) / "reports" / stamp).resolve()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.mkdir()
        except FileExistsError:
            raise ConfigError(f"{target}: this report folder already exists; run `govssl report` again "
                              f"in a second (reports are never written over)") from None
        except OSError as exc:
            raise ConfigError(f"{target}: cannot create the report folder: {exc}") from None
    else:
        target = out_dir.resolve()
        stored = store.stored_artifact_paths([str(target / name) for name in names])
        if stored:
            raise ConfigError(f"--out: {', '.join(stored)} already stored as artifact(s) of an audit run and "
                              f"never replaced; choose another folder")
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--out: cannot create {target}: {exc}") from None
    written = []
    try:
        written = reports.render(run, target, attestations=[asdict(a) for a in run.attestations], formats=formats)
        waived = [o.waiver["waiver_id"] for o in run.decision.outcomes if o.status == "waived" and o.waiver]
        store.add_rendering(run.run_id, written, str(target), waived, list(range(len(run.attestations))))
    except BaseException:
        if out_dir is None:
            shutil.rmtree(target, ignore_errors=True)  # nothing half-written on disk
        else:
            for artifact in written:
                Path(artifact.path).unlink(missing_ok=True)
        raise
    for artifact in written:
        out.print(str(artifact.path), markup=False)
    if waived:
        out.print(f"reflecting waiver(s) {', '.join(waived)}", markup=False)
    out.print(f"recorded {len(written)} document(s) as new artifacts of run {run.run_id} "
              f"(stored documents unchanged)", markup=False)
    out.print(f"decision of run {run.run_id}: {run.decision.verdict.upper()}", markup=False)


class LedgerHeadParam(click.ParamType):
    """``SEQ:HASH``, a ledger entry as `govssl verify` prints the head: (seq, lowercase hash)."""

    name = "SEQ:HASH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        seq, _, digest = str(value).strip().partition(":")
        digest = digest.lower()
        if not (seq.isascii() and seq.isdigit() and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            self.fail(f"{value!r} is not SEQ:HASH: a ledger entry number (0 or more), a colon and its "
                      f"64-hex-digit sha256, as `govssl verify` prints the head", param, ctx)
        return int(seq), digest


@cli.command()
@db_option
@json_option
@click.option("--expect-head", "expected", type=LedgerHeadParam(), multiple=True,
              help="A head recorded earlier (SEQ:HASH from an earlier verify): that entry must still be in the "
                   "chain with that hash, or exit 3. Repeatable.")
def verify(db_url: str | None, as_json: bool, expected: tuple[tuple[int, str], ...]) -> None:
    """Check the database file (SQLite's integrity check), walk the store's hash chain and hash
    the artifact files: exit 0 if everything holds, 3 naming the damaged index or page, the first
    entry that was changed, removed, inserted or reordered, or an expected head that is not in the
    chain; 3 too for a file that is not a govssl store (never changed). Prints the verified head
    (SEQ:HASH) to keep outside the store."""
    from dataclasses import asdict

    from govssl.store import AuditStore

    report = AuditStore(db_url, read_only=True).verify(check_files=True, expected=list(expected))
    head = f"{report.head_seq}:{report.head_hash}" if report.ok else None
    if as_json:
        click.echo(json.dumps(asdict(report) | {"head": head, "store": _store_label(db_url)}, indent=2))
    elif report.ok:
        elsewhere = f" ({report.files_missing} not on this machine)" if report.files_missing else ""
        heads = f"; {report.heads_checked} expected head(s) found in the chain" if report.heads_checked else ""
        out.print(f"ok: {report.entries} ledger entries verified in {_store_label(db_url)}; "
                  f"{report.files_checked} artifact file(s) match their sha256{elsewhere}{heads}")
        out.print(f"ledger head: {head}")
    else:
        err.print(f"integrity failure in {_store_label(db_url)}: {report.first_problem}", markup=False)
    sys.exit(EXIT_OK if report.ok else EXIT_INTEGRITY)


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@db_option
@json_option
def diff(run_a: str, run_b: str, db_url: str | None, as_json: bool) -> None:
    """Compare two stored runs: measurements side by side with deltas, rule outcomes whose status
    changed (one row per rule), and apart from them rules with the same status whose observed
    value or worst subject moved."""
    from govssl.store import AuditStore, diff_runs

    (a, b), _ = AuditStore(db_url, read_only=True).read_runs([run_a, run_b])
    result = diff_runs(a, b)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    a, b = result["run_a"], result["run_b"]
    out.print(f"A = {a} ({result['verdict_a']})   B = {b} ({result['verdict_b']})"
              + ("   model changed" if result["model_changed"] else "   same model")
              + ("   policy changed" if result["policy_changed"] else ""))
    table = Table(title="measurements", title_justify="left")
    for col in ("check", "metric", "subject", "A", "B", "B - A"):
        table.add_column(col, justify="right" if col in ("A", "B", "B - A") else "left")
    for m in result["measurements"]:
        delta = "" if m["delta"] is None else f"{m['delta']:+.4g}"
        table.add_row(esc(m["check"]), esc(m["metric"]), esc(m["subject"] or "(model)"), esc(_fmt(m["a"])), esc(_fmt(m["b"])), delta)
    out.print(table)
    for key, title, empty in (("rules_changed", "rule outcomes that changed", "no rule outcome changed"),
                              ("rules_moved", "same status, value moved", "")):
        if not result[key]:
            if empty:
                out.print(empty)
            continue
        rules = Table(title=title, title_justify="left")
        for col in ("rule", "A", "B", "subject A", "subject B", "observed A", "observed B"):
            rules.add_column(col)
        for r in result[key]:
            rules.add_row(esc(r["rule_id"]), str(r["status_a"] or "(absent)"), str(r["status_b"] or "(absent)"),
                          esc(r["subject_a"] or ""), esc(r["subject_b"] or ""),
                          esc(_fmt(r["observed_a"])), esc(_fmt(r["observed_b"])))
        out.print(rules)


def _format_help() -> str:
    return "What to write: " + "; ".join(f"{f.name}: {f.summary}" for f in EXPORT_FORMATS.values()) + "."


@cli.command()
@click.argument("run_id")
@click.option("--format", "format_name", type=click.Choice(list(EXPORT_FORMATS)), default=DEFAULT_FORMAT,
              show_default=True, help=_format_help())
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write (an existing file only with --force).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@db_option
def export(run_id: str, format_name: str, out_file: Path, force: bool, db_url: str | None) -> None:
    """Write one stored run in an export format: by default a zip of its record, documents,
    evidence, attestations and SHA256SUMS; or a CycloneDX ML-BOM, or Croissant metadata of its
    data. The run is read from the store and verified against its hash chain first, and every
    file the export states a hash for must still have it where it is found (exit 3 otherwise)."""
    from govssl.errors import ConfigError
    from govssl.formats import export as export_as
    from govssl.store import AuditStore

    if out_file.exists() and not force:
        raise ConfigError(f"--out: {out_file} already exists; pass --force to replace it")
    (run,), waivers = AuditStore(db_url, read_only=True).read_runs([run_id])
    if EXPORT_FORMATS[format_name].waivers:
        run = _effective(run, waivers)
    out.print(export_as(run, format_name, out_file, overwrite=force), markup=False)
