"""`govssl audit`: train, measure, decide, document and store one audit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from govssl import __version__
from govssl.cli._common import (
    _print_run, _store_label, cli, db_option, err, esc, json_option, out,
    RichProgress,
)
from govssl.errors import ConfigError, GovsslError


@cli.command()
@click.argument("plan", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Policy pack to decide with (default: the plan's `policy:`).")
@click.option("--out", "out_root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the run's documents (default: the plan's output.dir).")
@db_option
@json_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N",
              help="Train on N processes of this machine under torch.distributed (default: the plan's "
                   "training.distributed.nproc, 1).")
@click.option("--mlflow", "mlflow_uri", is_flag=False, flag_value="", default=None, metavar="[URI]",
              help="Also log the stored run to this MLflow tracking store (default: MLFLOW_TRACKING_URI, else "
                   "sqlite:///mlflow.db in the working folder): the plan as params, the model-wide figures as "
                   "metrics, the decision, run id and model sha256 as tags, the documents as artifacts. Needs "
                   "govssl[mlflow]. Give it after PLAN, or as --mlflow=URI.")
def audit(plan: Path, policy_path: Path | None, out_root: Path | None, db_url: str | None, as_json: bool, quiet: bool,
          nproc: int | None, mlflow_uri: str | None) -> None:
    """Train and audit the model an audit PLAN describes; exit 0 if the policy passes, 1 if blocked."""
    from govssl.audit import Terminated, run_audit, stop_on_signals

    from govssl.plan import MAX_NPROC  # here, not at import: `govssl --help` stays light

    if nproc is not None and nproc > MAX_NPROC:
        raise click.BadParameter(f"{nproc} is more than the {MAX_NPROC:,} processes govssl starts", param_hint="'--nproc'")
    launched = _torchrun_rank()
    if launched is not None:  # torchrun started this command on every process: train together
        rank, world = launched
        if nproc is not None:
            raise ConfigError(f"--nproc: torchrun started {world} processes already; leave --nproc out")
        if rank != 0:
            _train_as_rank(plan, rank, world)
        nproc = world
    progress = RichProgress(err, enabled=not quiet and not as_json and err.is_terminal)
    if not as_json:
        err.print(f"govssl {__version__}: auditing {plan}", markup=False)
    policy, tracker = policy_path, None
    if mlflow_uri is not None:  # plan, policy and tracking store are checked before anything trains
        from govssl.formats.mlflow import Tracker
        from govssl.plan import load_plan
        from govssl.policy import load_policy

        plan = load_plan(plan)
        policy = load_policy(policy_path if policy_path is not None else plan.policy_path())
        tracker = Tracker(mlflow_uri)
    try:
        with stop_on_signals():  # SIGTERM / SIGHUP clean up as Ctrl-C does, then exit 128 + signal
            run = run_audit(plan, policy, db_url=db_url, out_root=out_root, progress=progress, nproc=nproc)
    except Terminated as exc:
        kept = f"run {exc.run_id} was stored before it arrived" if exc.run_id else "nothing of the run was kept"
        err.print(f"stopped by {exc.name}; {kept}", markup=False)
        sys.exit(exc.exit_code)
    if as_json:
        click.echo(json.dumps(run.to_dict(), indent=2, default=str))
    else:
        _print_run(run, out)
        out.print(f"stored as run {esc(run.run_id)} in {esc(_store_label(db_url))}  ({run.seconds:.1f} s)")
    if tracker is not None:
        try:
            mlflow_run = tracker.log(run)
        except GovsslError as exc:
            raise type(exc)(f"{exc.args[0]} (the audit itself finished: run {run.run_id} is stored, decision "
                            f"{run.decision.verdict.upper()})", exc.problems) from None
        if not as_json:
            out.print(f"logged to MLflow {tracker.uri}: run {mlflow_run} in experiment {run.plan_name!r}",
                      markup=False)
    sys.exit(run.decision.exit_code)


def _torchrun_rank() -> tuple[int, int] | None:
    """(rank, world size) when ``torchrun`` started this audit as one of several processes.
    (The same test as ``govssl.train._distributed.torchrun_rank``, without importing torch.)"""
    import os

    world, rank = os.environ.get("WORLD_SIZE", ""), os.environ.get("RANK", "")
    if os.environ.get("TORCHELASTIC_RUN_ID") and world.isdigit() and int(world) > 1 and rank.isdigit():
        return int(rank), int(world)
    return None


def _train_as_rank(plan: Path, rank: int, world: int) -> None:
    """A rank other than 0 of a ``torchrun`` launch: train with the others and keep nothing;
    rank 0 runs the checks and stores the one run."""
    from govssl.audit import Terminated, stop_on_signals
    from govssl.plan import load_plan
    from govssl.train._distributed import train_under_torchrun

    try:
        with stop_on_signals():
            train_under_torchrun(load_plan(plan))
    except Terminated as exc:
        err.print(f"rank {rank} of {world}: stopped by {exc.name}", markup=False)
        sys.exit(exc.exit_code)
    err.print(f"rank {rank} of {world}: training done; rank 0 runs the checks and stores the run", markup=False)
    sys.exit(0)


@cli.group("plan")
def plan_commands() -> None:
    """Audit plans: check one before it trains anything."""


@plan_commands.command("validate")
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Policy pack to check against (default: the plan's `policy:`).")
def validate(plan_path: Path, policy_path: Path | None) -> None:
    """Check PLAN, its policy and its data's header without training; exit 0 if valid, 2 listing
    every problem otherwise."""
    from govssl.validate import validate_plan

    report = validate_plan(plan_path, policy_path)
    for warning in report.warnings:
        err.print(f"warning: {warning}", markup=False)
    if report.problems:
        raise ConfigError(f"{plan_path}: {len(report.problems)} problem(s) in the plan, its policy or its data",
                          report.problems)
    out.print(f"{plan_path}: valid", markup=False)
    for line in report.summary:
        out.print(f"  {line}", markup=False)
