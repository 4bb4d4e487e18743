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

from govssl.cli import audit, monitor, policy, provenance, release, serve, store  # noqa: F401  (registers the commands)
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


MAX_MESSAGE_LINE = 1_000  # a message line longer than this is cut (an input quoted back at length)


def _short(text: str) -> str:
    return "\n".join(line if len(line) <= MAX_MESSAGE_LINE else line[:MAX_MESSAGE_LINE] + " …(cut)"
                     for line in text.splitlines())


def _say(text: str) -> None:
    """Print a message without markup; if even that fails (a broken pipe, no memory), give up quietly."""
    try:
        err.print(_short(text), markup=False)
    except Exception:  # noqa: BLE001  the exit code still says what happened
        try:
            sys.stderr.write(text[:MAX_MESSAGE_LINE] + "\n")
        except Exception:  # noqa: BLE001
            pass


def _internal(exc: BaseException) -> int:
    log = _log_internal_error(exc)
    where = f"; details in {log}" if log else ""
    _say(f"internal error: {type(exc).__name__}: {exc}{where}")
    _say("this is a bug in govssl; please report it with the log")
    return EXIT_INTERNAL


def _run(argv: list[str] | None) -> int:
    try:
        cli.main(args=argv, prog_name="govssl", standalone_mode=False)
    except click.exceptions.Abort as exc:
        # click turns both KeyboardInterrupt and EOFError into Abort; only the first is Ctrl-C.
        # An EOFError that reaches this far escaped a reader that should have named its file: a bug.
        cause = exc.__cause__ or exc.__context__
        if cause is not None and not isinstance(cause, KeyboardInterrupt):
            return _internal(cause)
        _say("interrupted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return EXIT_INPUT
    except GovsslError as exc:
        _say("error: " + str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as exc:  # a bug: short message, traceback to a log file. A MemoryError too:
        # input is bounded before it is loaded, so running out of memory anyway is ours to fix
        return _internal(exc)
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps every failure to its exit code and a one-screen message."""
    sys.exit(_run(argv))
