"""The govssl command line: the only place that prints for humans and calls sys.exit.

Exit codes (every command): 0 done / policy passed, 1 policy blocked, 2 invalid input,
3 integrity failure, 4 internal error (the traceback goes to a log file, not the terminal).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from govssl import __version__
from govssl.errors import GovsslError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
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
    console.print(f"[bold]run[/] {run.run_id}   plan {run.plan_name}   policy {run.policy_name} v{run.policy_version}")
    t = run.training
    dp = t.dp
    private = (
        f"DP ({t.dp_scope}) epsilon {dp['epsilon']:.3g} at delta {dp['delta']:g}"
        + ("" if t.end_to_end_dp else "; pretraining was not private")
        if dp else "no differential privacy"
    )
    console.print(
        f"model {Path(t.model_path).name} sha256 {t.model_sha256[:16]}…  "
        f"{t.method} + {t.finetune_mode} on {t.label_fraction:.0%} of labels  |  {private}"
    )
    perf = Table(title="measurements (model-wide and gaps between groups)", title_justify="left")
    for col in ("check", "metric", "subject", "value", "95% CI", "n"):
        perf.add_column(col, justify="right" if col in ("value", "n") else "left")
    for r in run.results:
        if r.status != "measured":
            perf.add_row(r.check, f"[yellow]{r.status}[/]", "", r.reason[:60], "", "")
            continue
        for m in r.measurements:
            if "=" in m.subject:  # per-group rows are in the model card
                continue
            ci = f"[{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]" if m.ci_low is not None else ""
            perf.add_row(r.check, m.metric, m.subject or "(model)", _fmt(m.value), ci, _fmt(m.n))
    console.print(perf)
    rules = Table(title="policy rules", title_justify="left")
    for col in ("rule", "severity", "status", "observed", "threshold", "why"):
        rules.add_column(col)
    colours = {"pass": "green", "fail": "red", "missing": "red", "skipped": "yellow", "waived": "cyan"}
    for o in run.decision.outcomes:
        status = o.status if not (o.severity == "warn" and o.status == "fail") else "warn"
        colour = "yellow" if status == "warn" else colours.get(o.status, "white")
        why = "" if o.status == "pass" else o.message
        rules.add_row(o.rule_id, o.severity, f"[{colour}]{status}[/]", _fmt(o.observed), o.threshold, why)
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
def runs(db_url: str | None, as_json: bool, limit: int | None) -> None:
    """List the audit runs in the store, newest first."""
    from govssl.store import AuditStore

    rows = AuditStore(db_url).list_runs(limit=limit)
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
        table.add_row(r["run_id"], str(r["created_at"]), r["plan_name"], r["policy_name"],
                      (r["model_sha256"] or "")[:16], f"[{colour}]{r['verdict']}[/]", str(r["n_blocking"]))
    out.print(table)


@cli.command()
@click.argument("run_id")
@db_option
@json_option
def show(run_id: str, db_url: str | None, as_json: bool) -> None:
    """Print one stored run (RUN_ID or a unique prefix of it)."""
    from govssl.store import AuditStore

    run = AuditStore(db_url).load_run(run_id)
    if as_json:
        click.echo(json.dumps(run.to_dict(), indent=2, default=str))
    else:
        _print_run(run, out)


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
def attest_verify(envelope: Path, key_path: Path) -> None:
    """Verify a run's DSSE envelope and the files beside it; exit 3 on any change."""
    from govssl.provenance import load_public_key, verify_envelope

    stmt = verify_envelope(envelope, load_public_key(key_path))
    pred = stmt.get("predicate", {})
    out.print(f"{envelope}: signature valid; {len(stmt.get('subject', []))} subject(s); "
              f"run {pred.get('run_id')} decision {pred.get('decision', {}).get('verdict')}")


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
