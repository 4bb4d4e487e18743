"""What every command module shares: the consoles, common options, the run printer, the group.

Exit codes (every command): 0 done / policy passed, 1 policy blocked, 2 invalid input,
3 integrity failure, 4 internal error (the traceback goes to a log file, not the terminal).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from govssl import __version__

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


def _print_measurements(console: Console, results, title: str, hidden) -> None:
    """One table row per measurement of ``results`` (CheckResults) but those ``hidden(m)`` leaves
    out; a check that did not measure gets one row with its status and reason."""
    table = Table(title=title, title_justify="left")
    for col in ("check", "metric", "subject", "value", "95% CI", "n"):
        table.add_column(col, justify="right" if col in ("value", "n") else "left")
    for r in results:
        if r.status != "measured":
            table.add_row(esc(r.check), f"[yellow]{r.status}[/]", "", esc(r.reason[:60]), "", "")
            continue
        for m in r.measurements:
            if hidden(m):
                continue
            ci = f"[{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]" if m.ci_low is not None else ""
            table.add_row(esc(r.check), esc(m.metric), esc(m.subject or "(model)"), esc(_fmt(m.value)), esc(ci),
                          _fmt(m.n))
    console.print(table)


_STATUS_COLOURS = {"pass": "green", "fail": "red", "missing": "red", "inconclusive": "red", "skipped": "yellow",
                   "waived": "cyan"}


def _print_rules(console: Console, outcomes, title: str) -> None:
    """One table row per rule outcome: a failing warn rule shows as "warn"; a waived one names its
    approver, expiry and reason."""
    rules = Table(title=title, title_justify="left")
    for col in ("rule", "severity", "status", "observed", "threshold", "why"):
        rules.add_column(col)
    for o in outcomes:
        status = o.status if not (o.severity == "warn" and o.status == "fail") else "warn"
        colour = "yellow" if status == "warn" else _STATUS_COLOURS.get(o.status, "white")
        why = "" if o.status == "pass" else o.message
        if o.status == "waived" and getattr(o, "waiver", None):
            w = o.waiver
            why = f"waived by {w['approver']} until {w['expires']}: {w['reason']} (was: {o.message})"
        rules.add_row(esc(o.rule_id), esc(o.severity), f"[{colour}]{esc(status)}[/]", esc(_fmt(o.observed)),
                      esc(o.threshold), esc(why))
    console.print(rules)


def _print_run(run, console: Console) -> None:
    console.print(f"[bold]run[/] {esc(run.run_id)}   plan {esc(run.plan_name)}   policy {esc(run.policy_name)} "
                  f"v{esc(str(run.policy_version))}")
    t = run.training
    dp = t.dp
    private = (
        f"DP ({t.dp_scope}) epsilon {dp['epsilon']:.3g} at delta {dp['delta']:g}"
        + ("" if t.end_to_end_dp else "; pretraining was not private")
        if dp else "no differential privacy"
    )
    if not t.trained:
        console.print("model: not trained (the audit ended at preflight)", markup=False)
    else:
        console.print(
            f"model {Path(t.model_path).name} sha256 {t.model_sha256[:16]}…  "
            f"{t.method} + {t.finetune_mode} on {t.label_fraction:.0%} of labels  |  {private}", markup=False
        )
    _print_measurements(console, run.results, "measurements (model-wide and gaps between groups)",
                        lambda m: isinstance(m.details.get("group"), dict))  # per-group rows: in the model card
    _print_rules(console, run.decision.outcomes, "policy rules")
    docs = [a for a in run.artifacts if a.kind not in ("model", "predictions")]
    if docs:
        console.print("documents: " + ", ".join(str(Path(a.path)) for a in docs), markup=False)
    verdict = run.decision.verdict
    colour = "green" if run.decision.passed else "red"
    blockers = run.decision.blockers
    tail = f" ({len(blockers)} blocking rule(s): {esc(', '.join(o.rule_id for o in blockers))})" if blockers else ""
    tail += f" ({esc(run.decision.nothing_evaluated)})" if run.decision.nothing_evaluated else ""
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




def _store_label(db_url: str | None) -> str:
    from govssl.store import default_url

    url = db_url or default_url()
    return url.split("@")[-1] if "@" in url else url  # never print a password



def _effective(run, waivers):
    """The run with the waivers in force now applied to its stored decision: ``waivers`` are
    the verified waivers read with the run (AuditStore.read_runs); only those for this run or
    its model count, so the decision follows from the verified rule outcomes and waivers alone."""
    from govssl.policy import apply_waivers

    model = run.training.model_sha256
    mine = [w for w in waivers if w.run_id == run.run_id or (w.model_sha256 is not None and w.model_sha256 == model)]
    run.decision = apply_waivers(run.decision, mine, run_id=run.run_id, model_sha256=model)
    return run

