"""`govssl policy`: validate and explain policy packs."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from govssl.cli._common import (
    cli, esc,
    json_option, out,
)


@cli.group()
def policy() -> None:
    """Work with policy packs."""


@policy.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def policy_validate(file: Path) -> None:
    """Check a policy pack; every problem is listed at once (exit 2 if any)."""
    from govssl.policy import load_policy

    pol = load_policy(file)
    out.print(f"{file}: policy '{pol.name}' v{pol.version}, {len(pol.rules)} rule(s), valid  sha256 {pol.sha256}",
              markup=False)


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
    out.print(f"policy [bold]{esc(pol.name)}[/] v{esc(str(pol.version))}  sha256 {pol.sha256}")
    if pol.description:
        out.print(pol.description, markup=False)
    table = Table(show_lines=True)
    for col in ("rule", "measures", "passes when", "severity", "if missing", "NIST AI RMF", "why"):
        table.add_column(col)
    for r in pol.rules:
        subject = f" [{r.subject}]" if r.subject else " (worst subject)"
        small = f"; n >= {r.min_n}" if r.min_n else ""
        table.add_row(esc(r.id), esc(f"{r.check}.{r.metric}{subject}"), esc(r.threshold_text() + small), esc(r.severity),
                      esc(r.on_missing), esc(", ".join(r.rmf)), esc(r.rationale))
    out.print(table)

