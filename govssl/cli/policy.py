"""`govssl policy`: validate and explain policy packs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from rich.table import Table

from govssl.cli._common import (
    cli, esc,
    json_option, out,
)


def resolve_policy(value: str, where: str) -> Path:
    """The policy file a command-line value names, as plans name it: a value ending in .yaml or
    .yml or holding a path separator is a file; any other is a built-in pack's name (ConfigError
    naming ``where`` and the built-in packs when there is none of that name)."""
    from govssl.errors import ConfigError
    from govssl.policy import builtin_policy_path

    separators = {"/", os.sep, os.altsep} - {None}
    if value.endswith((".yaml", ".yml")) or any(sep in value for sep in separators):
        return Path(value)
    try:
        return builtin_policy_path(value)
    except KeyError as exc:
        raise ConfigError(f"{where}: {exc.args[0]} (a policy file must end in .yaml or .yml or contain a "
                          f"path separator)") from None


@cli.group()
def policy() -> None:
    """Work with policy packs."""


@policy.command("validate")
@click.argument("file", metavar="FILE_OR_NAME")
def policy_validate(file: str) -> None:
    """Check a policy pack (a file, or a built-in pack's name such as 'default'); every
    problem is listed at once (exit 2 if any)."""
    from govssl.policy import load_policy

    file = resolve_policy(file, "FILE_OR_NAME")
    pol = load_policy(file)
    out.print(f"{file}: policy '{pol.name}' v{pol.version}, {len(pol.rules)} rule(s), valid  sha256 {pol.sha256}",
              markup=False)


@policy.command("explain")
@click.argument("file", metavar="FILE_OR_NAME")
@json_option
def policy_explain(file: str, as_json: bool) -> None:
    """Show the rules of a policy pack (a file, or a built-in pack's name such as 'default')
    as a table: what each checks, how, and why."""
    from dataclasses import asdict

    from govssl.policy import load_policy

    pol = load_policy(resolve_policy(file, "FILE_OR_NAME"))
    if as_json:
        click.echo(json.dumps({"policy": pol.name, "version": pol.version, "sha256": pol.sha256,
                               "rules": [asdict(r) for r in pol.rules]}, indent=2))
        return
    out.print(f"policy [bold]{esc(pol.name)}[/] v{esc(str(pol.version))}  sha256 {pol.sha256}")
    if pol.description:
        out.print(pol.description, markup=False)
    table = Table(show_lines=True)
    for col in ("rule", "measures", "passes when", "severity", "if missing", "NIST AI RMF", "EU AI Act", "why"):
        table.add_column(col)
    for r in pol.rules:
        subject = f" [{r.subject}]" if r.subject else " (worst subject)"
        small = f"; n >= {r.min_n}" if r.min_n else ""
        table.add_row(esc(r.id), esc(f"{r.check}.{r.metric}{subject}"), esc(r.threshold_text() + small), esc(r.severity),
                      esc(r.on_missing), esc(", ".join(r.rmf)), esc(", ".join(r.eu_ai_act)), esc(r.rationale))
    out.print(table)

