"""The govssl command line: the only place that prints for humans and calls sys.exit.

Exit codes (every command): 0 done / policy passed, 1 policy blocked, 2 invalid input,
3 integrity failure, 4 internal error (the traceback goes to a log file, not the terminal).

One module per command group; each registers its commands on the group in ``_common``.
"""

from __future__ import annotations

import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

import click

from govssl.cli import audit, policy, provenance, release, store  # noqa: F401  (registers the commands)
from govssl.cli._common import EXIT_INPUT, EXIT_INTERNAL, EXIT_OK, LOG_DIR, cli, err
from govssl.errors import GovsslError

__all__ = ["cli", "main"]


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
