"""`govssl serve`: the read-only web dashboard over the audit store."""

from __future__ import annotations

import ipaddress
import socket

import click

from govssl.cli._common import _store_label, cli, db_option, err

MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1); names are not resolved."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free port), or ConfigError naming the option."""
    from govssl.errors import ConfigError

    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host: {host!r} is not an address this machine can listen on: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


@cli.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: a free port, printed on start).")
@click.option("--token", envvar="GOVSSL_SERVE_TOKEN", default=None, metavar="TOKEN",
              help=f"Bearer token every request must carry (Authorization: Bearer TOKEN; a browser may open "
                   f"the first page with ?token=TOKEN once). At least {MIN_TOKEN_LENGTH} characters. "
                   f"Required for a non-loopback --host (env GOVSSL_SERVE_TOKEN).")
@click.option("--recheck", "recheck_seconds", type=click.FloatRange(min=1), default=300.0, show_default=True,
              metavar="SECONDS",
              help="Walk the hash chain again at least this often even when the store looks unchanged "
                   "(it is walked again at once when its head or its SQLite file changes).")
def serve(db_url: str | None, host: str, port: int, token: str | None, recheck_seconds: float) -> None:
    """Serve a read-only web dashboard over the audit store: runs, one run's verdict and
    evidence, diffs, a model's history, the store's integrity. Never writes to the store; the
    chain is verified before anything from it is shown."""
    from govssl.errors import ConfigError

    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"--token: must be at least {MIN_TOKEN_LENGTH} characters (got {len(token)})")
    if not is_loopback(host) and token is None:
        raise ConfigError(f"--host {host}: not a loopback address, so the dashboard would be open to the network; "
                          f"pass --token (or set GOVSSL_SERVE_TOKEN) and every request must carry it, "
                          f"or serve on 127.0.0.1")
    import uvicorn

    from govssl.web import StoreView, create_app

    view = StoreView(db_url, recheck_seconds=recheck_seconds)
    state = view.state()
    sock = _listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown_host}:{bound_port}/"
    access = (f"every request must carry the bearer token (Authorization: Bearer ...; a browser may open "
              f"{url}?token=... once)" if token else "loopback only, no token")
    err.print(f"serving {_store_label(db_url)} read-only at {url} ({access})", markup=False)
    if state.ok:
        err.print(f"chain verified: {state.report.entries} ledger entries, head "
                  f"{state.report.head_seq}:{state.report.head_hash}", markup=False)
    else:
        err.print(f"integrity failure: {state.problem} (the dashboard shows it and no data)", markup=False)
    config = uvicorn.Config(create_app(view, token=token), log_level="warning", access_log=False,
                            lifespan="off", server_header=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
