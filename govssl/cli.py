"""The govssl command line: the only place that prints for humans and calls sys.exit.

Exit codes (every command): 0 done / policy passed, 1 policy blocked, 2 invalid input,
3 integrity failure, 4 internal error (the traceback goes to a log file, not the terminal).
"""

from __future__ import annotations

import json
import sys
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from govssl import __version__
from govssl.errors import GovsslError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
for _console in (out, err):
    if not _console.is_terminal:  # CI logs and pipes: wide enough for the tables, no wrapping
        _console.width = 140

EXIT_OK, EXIT_BLOCKED, EXIT_INPUT, EXIT_INTEGRITY, EXIT_INTERNAL = 0, 1, 2, 3, 4
LOG_DIR = Path(".govssl") / "logs"

db_option = click.option(
    "--db", "db_url", envvar="GOVSSL_DB_URL", default=None, metavar="URL",
    help="Audit store: any SQLAlchemy URL (default sqlite:///.govssl/audit.db; env GOVSSL_DB_URL).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")


class RichProgress:
    """govssl.progress.Progress on a rich progress bar (stderr), silent when not a terminal."""

    def __init__(self, console: Console, enabled: bool):
        self.console, self.enabled = console, enabled

    @contextmanager
    def task(self, description: str, total: int | None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if not self.enabled:
            from govssl.progress import NullProgress

            with NullProgress().task(description, total) as task:
                yield task
            return
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
            console=self.console, transient=False,
        ) as bar:
            task_id = bar.add_task(description, total=total, info="")

            class _Task:
                def advance(self, steps: int = 1, **info):
                    text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
                    bar.update(task_id, advance=steps, info=text)

            yield _Task()

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(message)


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _print_run(run, console: Console) -> None:
    console.print(f"[bold]run[/] {esc(run.run_id)}   plan {esc(run.plan_name)}   policy {esc(run.policy_name)} v{run.policy_version}")
    t = run.training
    dp = t.dp
    private = (
        f"DP ({t.dp_scope}) epsilon {dp['epsilon']:.3g} at delta {dp['delta']:g}"
        + ("" if t.end_to_end_dp else "; pretraining was not private")
        if dp else "no differential privacy"
    )
    console.print(
        f"model {Path(t.model_path).name} sha256 {t.model_sha256[:16]}…  "
        f"{t.method} + {t.finetune_mode} on {t.label_fraction:.0%} of labels  |  {private}", markup=False
    )
    perf = Table(title="measurements (model-wide and gaps between groups)", title_justify="left")
    for col in ("check", "metric", "subject", "value", "95% CI", "n"):
        perf.add_column(col, justify="right" if col in ("value", "n") else "left")
    for r in run.results:
        if r.status != "measured":
            perf.add_row(esc(r.check), f"[yellow]{r.status}[/]", "", esc(r.reason[:60]), "", "")
            continue
        for m in r.measurements:
            if isinstance(m.details.get("group"), dict):  # per-group rows are in the model card
                continue
            ci = f"[{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]" if m.ci_low is not None else ""
            perf.add_row(esc(r.check), esc(m.metric), esc(m.subject or "(model)"), esc(_fmt(m.value)), esc(ci), _fmt(m.n))
    console.print(perf)
    rules = Table(title="policy rules", title_justify="left")
    for col in ("rule", "severity", "status", "observed", "threshold", "why"):
        rules.add_column(col)
    colours = {"pass": "green", "fail": "red", "missing": "red", "skipped": "yellow", "waived": "cyan"}
    for o in run.decision.outcomes:
        status = o.status if not (o.severity == "warn" and o.status == "fail") else "warn"
        colour = "yellow" if status == "warn" else colours.get(o.status, "white")
        why = "" if o.status == "pass" else o.message
        if o.status == "waived" and o.waiver:
            w = o.waiver
            why = f"waived by {w['approver']} until {w['expires']}: {w['reason']} (was: {o.message})"
        rules.add_row(esc(o.rule_id), o.severity, f"[{colour}]{status}[/]", esc(_fmt(o.observed)), esc(o.threshold), esc(why))
    console.print(rules)
    docs = [a for a in run.artifacts if a.kind not in ("model", "predictions")]
    if docs:
        console.print("documents: " + ", ".join(str(Path(a.path)) for a in docs))
    verdict = run.decision.verdict
    colour = "green" if run.decision.passed else "red"
    blockers = run.decision.blockers
    tail = f" ({len(blockers)} blocking rule(s): {', '.join(o.rule_id for o in blockers)})" if blockers else ""
    warns = run.decision.warnings
    tail += f"; {len(warns)} warning(s)" if warns else ""
    console.print(f"[bold {colour}]decision: {verdict.upper()}[/]{tail}  exit {run.decision.exit_code}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="govssl")
def cli() -> None:
    """govssl: train a model under policy and decide whether it may ship.

    Exit codes: 0 pass, 1 blocked by policy, 2 invalid input, 3 integrity failure,
    4 internal error.
    """


@cli.command()
@click.argument("plan", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Policy pack to decide with (default: the plan's `policy:`).")
@click.option("--out", "out_root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the run's documents (default: the plan's output.dir).")
@db_option
@json_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def audit(plan: Path, policy_path: Path | None, out_root: Path | None, db_url: str | None, as_json: bool, quiet: bool) -> None:
    """Train and audit the model an audit PLAN describes; exit 0 if the policy passes, 1 if blocked."""
    from govssl.audit import run_audit

    progress = RichProgress(err, enabled=not quiet and not as_json and err.is_terminal)
    if not as_json:
        err.print(f"govssl {__version__}: auditing {plan}")
    run = run_audit(plan, policy_path, db_url=db_url, out_root=out_root, progress=progress)
    if as_json:
        click.echo(json.dumps(run.to_dict(), indent=2, default=str))
    else:
        _print_run(run, out)
        out.print(f"stored as run {run.run_id} in {_store_label(db_url)}  ({run.seconds:.1f} s)")
    sys.exit(run.decision.exit_code)


def _store_label(db_url: str | None) -> str:
    from govssl.store import default_url

    url = db_url or default_url()
    return url.split("@")[-1] if "@" in url else url  # never print a password


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

    rows = AuditStore(db_url, create=False).find_runs(model_sha256=model_sha256, verdict=verdict, since=since,
                                        plan_name=plan_name, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        out.print(f"no runs in {_store_label(db_url)}")
        return
    table = Table(title=f"{len(rows)} run(s) in {_store_label(db_url)}", title_justify="left")
    for col in ("run", "created (UTC)", "plan", "policy", "model sha256", "decision", "blocking"):
        table.add_column(col)
    for r in rows:
        colour = "green" if r["verdict"] == "pass" else "red"
        table.add_row(esc(r["run_id"]), str(r["created_at"]), esc(r["plan_name"]), esc(r["policy_name"]),
                      (r["model_sha256"] or "")[:16], f"[{colour}]{r['verdict']}[/]", str(r["n_blocking"]))
    out.print(table)


@cli.command()
@click.argument("run_id")
@db_option
@json_option
def show(run_id: str, db_url: str | None, as_json: bool) -> None:
    """Print one stored run (RUN_ID or a unique prefix of it)."""
    from govssl.store import AuditStore

    store = AuditStore(db_url, create=False)
    run = _effective(store, store.load_run(run_id))
    if as_json:
        click.echo(json.dumps(run.to_dict(), indent=2, default=str))
    else:
        _print_run(run, out)


def _effective(store, run):
    """The run with the waivers in force now applied to its stored decision."""
    from govssl.policy import apply_waivers

    waivers = store.waivers(run_id=run.run_id) + store.waivers(model_sha256=run.training.model_sha256)
    run.decision = apply_waivers(run.decision, waivers, run_id=run.run_id, model_sha256=run.training.model_sha256)
    return run


@cli.command()
@click.option("--run", "run_id", required=True, help="The audit run (id or unique prefix).")
@click.option("--rule", "rule_id", required=True, help="The rule whose blocking failure is accepted.")
@click.option("--approver", required=True, help="Who approves the exception (name or role).")
@click.option("--reason", required=True, help="Why the failure is acceptable; shown in every document.")
@click.option("--expires", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Last day the waiver counts (YYYY-MM-DD, UTC).")
@click.option("--for-model", "for_model", is_flag=True,
              help="Waive the rule for every audit of this run's model (same sha256), not just this run.")
@db_option
def waive(run_id: str, rule_id: str, approver: str, reason: str, expires, for_model: bool, db_url: str | None) -> None:
    """Accept a rule's blocking failure until a date, with an approver and a reason."""
    import secrets as _secrets
    from datetime import datetime as _dt, timezone as _tz

    from govssl.errors import ConfigError
    from govssl.policy import unwaived
    from govssl.records import Waiver
    from govssl.store import AuditStore

    store = AuditStore(db_url, create=False)
    run = store.load_run(run_id)
    outcome = next((o for o in run.decision.outcomes if o.rule_id == rule_id), None)
    if outcome is None:
        rules = ", ".join(o.rule_id for o in run.decision.outcomes)
        raise ConfigError(f"--rule: run {run.run_id} has no rule '{rule_id}'; its rules: {rules}")
    if not unwaived(outcome).blocking:
        raise ConfigError(f"--rule: rule '{rule_id}' did not block run {run.run_id} (status {unwaived(outcome).status}, "
                          f"severity {outcome.severity}); only blocking failures can be waived")
    today = _dt.now(_tz.utc).date()
    if expires.date() < today:
        raise ConfigError(f"--expires: {expires.date()} is in the past (today is {today} UTC)")
    for name, value in (("--approver", approver), ("--reason", reason)):
        if not value.strip():
            raise ConfigError(f"{name}: must not be empty")
    waiver = Waiver(
        waiver_id=_secrets.token_hex(8), rule_id=rule_id, approver=approver.strip(), reason=reason.strip(),
        expires=expires.date().isoformat(), created_at=_dt.now(_tz.utc).isoformat(timespec="seconds"),
        run_id=None if for_model else run.run_id,
        model_sha256=run.training.model_sha256 if for_model else None,
    )
    store.add_waiver(waiver)
    run = _effective(store, run)
    scope = f"model {run.training.model_sha256[:16]}…" if for_model else f"run {run.run_id}"
    out.print(f"waiver {waiver.waiver_id}: rule {rule_id} waived for {scope} until {waiver.expires} "
              f"(approver {waiver.approver})", markup=False)
    out.print(f"decision of run {run.run_id} now: {run.decision.verdict.upper()}", markup=False)


@cli.command()
@click.option("--model", "model_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The model file about to be released.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The policy it must have passed (default: the built-in default pack).")
@click.option("--max-age", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help="Only audits at most this many days old count.")
@db_option
@json_option
def gate(model_file: Path, policy_path: Path | None, max_age: int | None, db_url: str | None, as_json: bool) -> None:
    """Exit 0 only if the store holds a passing (or fully waived) audit of exactly this model
    file under exactly this policy file; otherwise exit 1 with the reason. For CI release jobs."""
    from datetime import datetime as _dt, timedelta, timezone as _tz

    from govssl.errors import DataError
    from govssl.policy import builtin_policy_path, load_policy
    from govssl.records import sha256_file
    from govssl.store import AuditStore

    if not model_file.is_file():
        raise DataError(f"{model_file}: model file not found")
    pol = load_policy(policy_path or builtin_policy_path("default"))
    model_sha = sha256_file(model_file)
    store = AuditStore(db_url, create=False)
    since = _dt.now(_tz.utc) - timedelta(days=max_age) if max_age is not None else None
    candidates = store.find_runs(model_sha256=model_sha, policy_sha256=pol.sha256, since=since)
    verdict = {"model": str(model_file), "model_sha256": model_sha, "policy": pol.name,
               "policy_sha256": pol.sha256, "max_age_days": max_age, "passed": False, "run_id": None}
    reason = ""
    if not candidates:
        older = store.find_runs(model_sha256=model_sha, policy_sha256=pol.sha256) if since else []
        any_policy = store.find_runs(model_sha256=model_sha)
        if older:
            reason = f"the newest audit of this model under this policy ({older[0]['run_id']}) is older than {max_age} day(s)"
        elif any_policy:
            reason = (f"this model was audited ({any_policy[0]['run_id']}) but never under policy "
                      f"'{pol.name}' with sha256 {pol.sha256[:16]}…")
        else:
            reason = f"no audit of a model with sha256 {model_sha[:16]}… in the store"
    for row in candidates:  # newest first: the newest passing audit releases the model
        run = _effective(store, store.load_run(row["run_id"]))
        if run.decision.passed:
            waived = [o.rule_id for o in run.decision.outcomes if o.status == "waived"]
            verdict.update(passed=True, run_id=run.run_id, waived_rules=waived)
            break
        if not reason:
            blockers = ", ".join(o.rule_id for o in run.decision.blockers)
            reason = f"the newest audit ({run.run_id}) is blocked by: {blockers}"
    verdict["reason"] = "" if verdict["passed"] else reason
    if as_json:
        click.echo(json.dumps(verdict, indent=2))
    elif verdict["passed"]:
        extra = f" with waived rule(s) {', '.join(verdict['waived_rules'])}" if verdict["waived_rules"] else ""
        out.print(f"gate: PASS  {model_file} (sha256 {model_sha[:16]}…) passed policy {pol.name} in run "
                  f"{verdict['run_id']}{extra}", markup=False)
    else:
        out.print(f"gate: BLOCKED  {model_file} (sha256 {model_sha[:16]}…): {reason}", markup=False)
    sys.exit(EXIT_OK if verdict["passed"] else EXIT_BLOCKED)


@cli.command()
@click.argument("run_id")
@click.option("--format", "formats", type=click.Choice(["md", "html", "json"]), multiple=True,
              help="Which documents to write (repeatable; default all).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write into (default: the run's own folder).")
@db_option
def report(run_id: str, formats: tuple[str, ...], out_dir: Path | None, db_url: str | None) -> None:
    """Re-render a stored run's documents from the store alone (current waivers and
    attestations), without retraining."""
    from dataclasses import asdict

    from govssl import reports
    from govssl.store import AuditStore

    store = AuditStore(db_url, create=False)
    run = _effective(store, store.load_run(run_id))
    target = out_dir or Path(run.out_dir)
    target.mkdir(parents=True, exist_ok=True)
    written = reports.render(run, target, attestations=[asdict(a) for a in run.attestations],
                             formats=formats or ("md", "html", "json"))
    for artifact in written:
        out.print(str(artifact.path), markup=False)
    out.print(f"decision of run {run.run_id}: {run.decision.verdict.upper()}", markup=False)


@cli.command("attest-rmf")
@click.option("--run", "run_id", required=True, help="The audit run the statement belongs to.")
@click.option("--subcategory", required=True, help="NIST AI RMF subcategory, e.g. 'GOVERN 1.1'.")
@click.option("--by", "by", required=True, help="Who attests (name and role).")
@click.option("--statement", required=True, help="What is attested, in a sentence or two.")
@click.option("--date", "on", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Date of the statement (YYYY-MM-DD; default today, UTC).")
@db_option
def attest_rmf(run_id: str, subcategory: str, by: str, statement: str, on, db_url: str | None) -> None:
    """Record a person's attestation for a NIST AI RMF subcategory no check can evidence."""
    from datetime import datetime as _dt, timezone as _tz

    from govssl.errors import ConfigError
    from govssl.records import Attestation
    from govssl.rmf import is_subcategory
    from govssl.store import AuditStore

    if not is_subcategory(subcategory):
        raise ConfigError(f"--subcategory: '{subcategory}' is not a NIST AI RMF 1.0 subcategory (e.g. 'GOVERN 1.1')")
    for name, value in (("--by", by), ("--statement", statement)):
        if not value.strip():
            raise ConfigError(f"{name}: must not be empty")
    store = AuditStore(db_url, create=False)
    run = store.load_run(run_id)
    day = (on.date() if on else _dt.now(_tz.utc).date()).isoformat()
    store.add_attestations(run.run_id, [Attestation(subcategory, by.strip(), day, statement.strip())])
    out.print(f"attested {subcategory} for run {run.run_id} by {by.strip()} on {day}; "
              f"`govssl report {run.run_id}` re-renders the documents", markup=False)


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
    """Walk the store's hash chain and hash the artifact files: exit 0 if everything holds,
    3 naming the first entry that was changed, removed, inserted or reordered, or an expected
    head that is not in the chain. Prints the verified head (SEQ:HASH) to keep outside the store."""
    from dataclasses import asdict

    from govssl.store import AuditStore

    report = AuditStore(db_url, create=False).verify(check_files=True, expected=list(expected))
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
    """Compare two stored runs: measurements side by side with deltas, rule outcomes that changed."""
    from govssl.store import AuditStore, diff_runs

    store = AuditStore(db_url, create=False)
    result = diff_runs(store.load_run(run_a), store.load_run(run_b))
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
    if not result["rules_changed"]:
        out.print("no rule outcome changed")
        return
    rules = Table(title="rule outcomes that changed", title_justify="left")
    for col in ("rule", "subject", "A", "B", "observed A", "observed B"):
        rules.add_column(col)
    for r in result["rules_changed"]:
        rules.add_row(esc(r["rule_id"]), esc(r["subject"]), str(r["status_a"]), str(r["status_b"]),
                      _fmt(r["observed_a"]), _fmt(r["observed_b"]))
    out.print(rules)


@cli.command()
@click.argument("run_id")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The zip file to write.")
@db_option
def export(run_id: str, out_file: Path, db_url: str | None) -> None:
    """Write one stored run as a zip: record, documents, evidence, attestations, SHA256SUMS."""
    from govssl.store import AuditStore, export_run

    run = AuditStore(db_url, create=False).load_run(run_id)
    names = export_run(run, out_file)
    out.print(f"exported run {run.run_id} to {out_file}: {len(names)} file(s) including SHA256SUMS")


@cli.group()
def policy() -> None:
    """Work with policy packs."""


@policy.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def policy_validate(file: Path) -> None:
    """Check a policy pack; every problem is listed at once (exit 2 if any)."""
    from govssl.policy import load_policy

    pol = load_policy(file)
    out.print(f"{file}: policy '{pol.name}' v{pol.version}, {len(pol.rules)} rule(s), valid  sha256 {pol.sha256}")


@policy.command("explain")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def policy_explain(file: Path, as_json: bool) -> None:
    """Show the rules of a policy pack as a table: what each checks, how, and why."""
    from dataclasses import asdict

    from govssl.policy import load_policy

    pol = load_policy(file)
    if as_json:
        click.echo(json.dumps({"policy": pol.name, "version": pol.version, "sha256": pol.sha256,
                               "rules": [asdict(r) for r in pol.rules]}, indent=2))
        return
    out.print(f"policy [bold]{pol.name}[/] v{pol.version}  sha256 {pol.sha256}")
    if pol.description:
        out.print(pol.description, markup=False)
    table = Table(show_lines=True)
    for col in ("rule", "measures", "passes when", "severity", "if missing", "NIST AI RMF", "why"):
        table.add_column(col)
    for r in pol.rules:
        subject = f" [{r.subject}]" if r.subject else " (worst subject)"
        small = f"; n >= {r.min_n}" if r.min_n else ""
        table.add_row(esc(r.id), esc(f"{r.check}.{r.metric}{subject}"), esc(r.threshold_text() + small), r.severity,
                      r.on_missing, ", ".join(r.rmf), esc(r.rationale))
    out.print(table)


@cli.group()
def data() -> None:
    """Data manifests: record what data files are, and verify them later."""


@data.command("manifest")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("manifest.json"),
              show_default=True, help="Manifest file to write; file paths are recorded relative to its folder.")
@click.option("--source", default="", help="Where the data came from (URL or description).")
@click.option("--license", "licence", default="", help="Licence id of the data, e.g. CC-BY-4.0.")
@click.option("--creator", default="", help="Who created the data.")
@click.option("--notes", default="", help="Collection notes: how, when and from whom the data was collected.")
@click.option("--sign", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Private key file (from `govssl keys generate`) to sign the manifest with.")
def data_manifest(files, out_path: Path, source: str, licence: str, creator: str, notes: str, key_path: Path | None) -> None:
    """Write a manifest of FILES: sha256, size, rows, typed columns and an order-independent content hash."""
    from govssl.provenance import build_manifest, load_signing_key, sign_manifest, write_manifest

    key = load_signing_key(key_path) if key_path else None
    manifest = build_manifest(list(files), base=out_path.resolve().parent, source=source, license=licence,
                              creator=creator, collection_notes=notes)
    if key is not None:
        manifest = sign_manifest(manifest, key)
    write_manifest(manifest, out_path)
    signed = f", signed by key {key.public.keyid[:16]}..." if key else ", unsigned"
    out.print(f"{out_path}: manifest of {len(files)} file(s){signed}")


@data.command("verify")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Public key the manifest must be signed by.")
def data_verify(manifest: Path, key_path: Path | None) -> None:
    """Check every file of MANIFEST and its signatures; exit 3 naming the file that differs."""
    from govssl.provenance import load_public_key, verify_manifest

    report = verify_manifest(manifest, load_public_key(key_path) if key_path else None)
    signers = ", ".join(k[:16] + "..." for k in report.signers) or "none (unsigned)"
    out.print(f"{manifest}: {len(report.files)} file(s) verified; valid signatures: {signers}")


@cli.group()
def keys() -> None:
    """Ed25519 key pairs for signing manifests and audit evidence."""


@keys.command("generate")
@click.option("--out", "prefix", required=True, type=click.Path(path_type=Path),
              help="Writes PREFIX.key (private, mode 0600) and PREFIX.pub.")
def keys_generate(prefix: Path) -> None:
    """Make an Ed25519 key pair; never overwrites an existing key."""
    from govssl.provenance import generate_keys, load_public_key

    private, public = generate_keys(prefix)
    out.print(f"private key {private} (keep it secret), public key {public}, key id {load_public_key(public).keyid}")


@cli.group()
def attest() -> None:
    """Signed in-toto evidence of audit runs."""


@attest.command("verify")
@click.argument("envelope", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Public key the envelope must be signed by.")
# explicit only (no GOVSSL_DB_URL): checking a store is asked for, not implied by the environment
@click.option("--db", "db_url", default=None, metavar="URL",
              help="Also check this audit store's chain against the statement's signed ledger anchor.")
def attest_verify(envelope: Path, key_path: Path, db_url: str | None) -> None:
    """Verify a run's DSSE envelope and the files beside it; exit 3 on any change. With --db, also
    check the store: its chain must verify and still hold the ledger head the signed statement
    recorded before its run was saved (exit 3 if that entry has another hash or is missing)."""
    from govssl.errors import IntegrityError
    from govssl.provenance import ledger_anchor, load_public_key, verify_envelope

    stmt = verify_envelope(envelope, load_public_key(key_path))
    pred = stmt.get("predicate", {})
    out.print(f"{envelope}: signature valid; {len(stmt.get('subject', []))} subject(s); "
              f"run {pred.get('run_id')} decision {pred.get('decision', {}).get('verdict')}", markup=False)
    if db_url is None:
        return
    from govssl.store import AuditStore

    anchor = ledger_anchor(stmt, envelope)
    report = AuditStore(db_url, create=False).verify(expected=[(anchor["seq"], anchor["hash"])])
    if not report.ok:
        raise IntegrityError(f"{envelope}: the store {_store_label(db_url)} does not hold the chain this "
                             f"statement anchors (entry {anchor['seq']}): {report.first_problem}")
    out.print(f"ledger anchor: entry {anchor['seq']} ({anchor['hash']}), recorded for {anchor['store']}, is in "
              f"the chain of {_store_label(db_url)}; {report.entries} ledger entries verified", markup=False)


def _log_internal_error(exc: BaseException) -> Path | None:
    try:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        path = LOG_DIR / f"error-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}.log"
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
        return path
    except OSError:
        return None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps every failure to its exit code and a one-screen message."""
    try:
        cli.main(args=argv, prog_name="govssl", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_INPUT)
    except GovsslError as exc:
        err.print("error: " + str(exc), markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: short message, traceback to a log file
        log = _log_internal_error(exc)
        where = f"; details in {log}" if log else ""
        err.print(f"internal error: {type(exc).__name__}: {exc}{where}", markup=False)
        err.print("this is a bug in govssl; please report it with the log", markup=False)
        sys.exit(EXIT_INTERNAL)
    sys.exit(EXIT_OK)


if __name__ == "__main__":
    main(sys.argv[1:])
