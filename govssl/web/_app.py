"""The Starlette application of `govssl serve`: routes, security headers, bearer token.

Every page is drawn on the server by sandboxed, autoescaped Jinja from the templates in this
package; there is no JavaScript at all. Pages read a verified :class:`~govssl.web._view.State`
of the store and never write to it (the store is opened read-only).

Routes (the monitoring results `govssl monitor` stored are listed on the runs page, their run's
page and their model's history):

    /                         the runs and the monitoring results, filterable by model, plan, decision and date
    /runs/{run_id}            one run: verdict, why, rules, charts, DP, waivers, attestations, documents
    /runs/{run_id}/charts/{name}.svg   its charts (matplotlib SVG, cached per verified state)
    /runs/{run_id}/documents/{path}    its stored files, served only while their sha256 matches the store
    /runs/{run_id}/export.zip          the run as `govssl export` writes it
    /diff?a=RUN&b=RUN         two runs side by side (`govssl diff`)
    /models/{sha256}          a model's history of audits and monitoring results
    /integrity                the last verify, the head checked live; ?full=1 re-walks and hashes files
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import tempfile
from dataclasses import asdict
from datetime import date, datetime, timezone
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, quote

from jinja2 import PackageLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from govssl import __version__
from govssl.errors import DataError, GovsslError, IntegrityError, StoreError
from govssl.reports import privacy_statement
from govssl.reports._context import policy_rationales, verdict_reasons
from govssl.reports._format import num
from govssl.store import diff_runs, export_run
from govssl.web._charts import CHARTS, chart_svg, charts_of
from govssl.web._view import State, StoreView

__all__ = ["CSP", "DOCUMENT_CSP", "create_app"]

log = logging.getLogger("govssl.serve")

#: every page: nothing from outside, no script at all, styles from this server's stylesheet only
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
#: a stored document or chart: shown as it is, sandboxed (its own inline styles, nothing else)
DOCUMENT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; sandbox"
PAGE_SIZE = 100
TOKEN_COOKIE = "govssl_token"
_STATIC = Path(__file__).with_name("static")


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=PackageLoader("govssl.web", "templates"), autoescape=True, undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(num=num, short=lambda s, n=16: (s or "")[:n], url=lambda s: quote(str(s), safe=""))
    env.globals["version"] = __version__
    return env


class _Security:
    """ASGI middleware: the bearer token (when set) and the security headers on every answer."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    def _authorised(self, scope) -> tuple[bool, bool]:
        """(authorised, came by the query string) for one request."""
        if self.token is None:
            return True, False
        headers = dict(scope.get("headers") or [])
        given = []
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            given.append(auth[7:].strip())
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == TOKEN_COOKIE:
                given.append(value)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        expected = self.token.encode("utf-8")
        for value in given:
            if hmac.compare_digest(value.encode("utf-8"), expected):
                return True, False
        for value in query:
            if hmac.compare_digest(value.encode("utf-8"), expected):
                return True, True
        return False, False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        ok, by_query = self._authorised(scope)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {name.lower() for name, _ in headers}
                extra = [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                ]
                headers += [(n, v) for n, v in extra if n not in names]
                if by_query:  # a browser given the token once keeps it in a cookie
                    headers.append((b"set-cookie", f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; "
                                                   f"Path=/".encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        if not ok:
            response = PlainTextResponse(
                "401 unauthorised: this dashboard needs its bearer token (Authorization: Bearer TOKEN)\n",
                status_code=401, headers={"www-authenticate": 'Bearer realm="govssl"'},
            )
            return await response(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)


def _paged(rows: list, asked: str) -> tuple[list, int, int]:
    """The rows of page ``asked`` (1-based, PAGE_SIZE to a page), its number and the page count."""
    try:
        number = max(int(asked), 1)
    except ValueError:
        raise HTTPException(400, f"page: {asked!r} is not a whole number") from None
    return rows[(number - 1) * PAGE_SIZE: number * PAGE_SIZE], number, max(-(-len(rows) // PAGE_SIZE), 1)


def _day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None


def create_app(view: StoreView, token: str | None = None) -> Starlette:
    """The dashboard over ``view`` (a store opened read-only); ``token``: every request must
    carry it (``Authorization: Bearer``, or once as ``?token=`` which sets a cookie).

    The page handlers are plain functions, which Starlette runs in its thread pool: a walk of
    the chain or a chart being drawn does not hold up other pages."""
    env = _environment()

    def page(request: Request, template: str, state: State, status: int = 200, **context) -> HTMLResponse:
        html = env.get_template(template).render(
            state=state, store=view.label, request_path=request.url.path, **context
        )
        return HTMLResponse(html, status_code=status)

    def state_or_failure(request: Request) -> State:
        return view.state()

    def require_ok(request: Request, state: State) -> None:
        if not state.ok:
            raise _Untrusted()

    def lookup(state: State, run_id: str):
        if state.row(run_id) is None:
            raise HTTPException(404, f"no run '{run_id}' in {view.label}")
        return state.run(run_id)

    def runs(request: Request):
        state = state_or_failure(request)
        require_ok(request, state)
        q = request.query_params
        decision = q.get("decision", "")
        if decision not in ("", "pass", "blocked", "waived"):
            raise HTTPException(400, f"decision: {decision!r} is not pass, blocked or waived")
        filters = {"model": q.get("model", "").strip(), "plan": q.get("plan", ""), "decision": decision,
                   "since": q.get("since", ""), "until": q.get("until", "")}
        rows = state.find(filters["model"], filters["plan"], decision, _day(filters["since"], "since"),
                          _day(filters["until"], "until"))
        shown, number, pages = _paged(rows, q.get("page", "1"))
        plans = sorted({r["plan_name"] for r in state.snapshot.runs})
        monitoring = state.find_monitoring(filters["model"], filters["plan"], decision,
                                           _day(filters["since"], "since"), _day(filters["until"], "until"))
        return page(request, "runs.html", state, rows=shown, total=len(rows), filters=filters, plans=plans,
                    page=number, pages=pages, all_runs=len(state.snapshot.runs),
                    monitoring=monitoring[:PAGE_SIZE], monitoring_total=len(monitoring),
                    all_monitoring=len(state.monitoring()))

    def run_page(request: Request):
        state = state_or_failure(request)
        require_ok(request, state)
        run_id = request.path_params["run_id"]
        run = lookup(state, run_id)
        row = state.row(run_id)
        memo = state.cache.setdefault(("run", run_id), {})
        if "why" not in memo:
            rationales, unavailable = policy_rationales(run)
            memo.update(why=verdict_reasons(run), rationales=rationales, unavailable=unavailable)
        documents = [_document(run, position, a) for position, a in enumerate(run.artifacts)]
        now = datetime.now(timezone.utc)
        waivers = [{**asdict(w), "active": w.active(now)} for w in state.waivers_of(row)]
        others = [r for r in state.snapshot.runs if r["run_id"] != run_id][:200]
        return page(request, "run.html", state, run=run, row=row, why=memo["why"], rationales=memo["rationales"],
                    rationale_unavailable=memo["unavailable"], privacy=privacy_statement(run.training),
                    charts=[(name, *CHARTS[name]) for name in charts_of(run)], documents=documents,
                    waivers=waivers, renderings=state.snapshot.renderings(run_id), others=others,
                    monitoring=state.monitoring(run_id))

    def chart(request: Request):
        state = state_or_failure(request)
        require_ok(request, state)
        run_id, name = request.path_params["run_id"], request.path_params["name"]
        run = lookup(state, run_id)
        if name not in CHARTS or name not in charts_of(run):
            raise HTTPException(404, f"run '{run_id}' has no chart '{name}'")
        key = ("chart", run_id, name)
        if key not in state.cache:
            state.cache[key] = chart_svg(run, name)
        return Response(state.cache[key], media_type="image/svg+xml",
                        headers={"content-security-policy": DOCUMENT_CSP})

    def document(request: Request):
        state = state_or_failure(request)
        require_ok(request, state)
        run_id = request.path_params["run_id"]
        run = lookup(state, run_id)
        wanted = request.path_params["path"]
        found = next(((p, a) for p, a in enumerate(run.artifacts) if _document(run, p, a)["href"] == wanted), None)
        if found is None:
            raise HTTPException(404, f"run '{run_id}' has no stored document '{wanted}'")
        _, artifact = found
        path = Path(artifact.path)
        try:
            data = path.read_bytes()
        except OSError:
            raise HTTPException(404, f"the {artifact.kind} file {path} of run '{run_id}' is not on this machine") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != artifact.sha256:
            raise IntegrityError(f"the {artifact.kind} file {path} of run '{run_id}' changed on disk (sha256 "
                                 f"{actual}, the store records {artifact.sha256}); it is not served")
        media = _media_type(path)
        headers = {"content-security-policy": DOCUMENT_CSP}
        if media == "application/octet-stream":
            headers["content-disposition"] = f"attachment; filename*=UTF-8''{quote(path.name)}"
        return Response(data, media_type=media, headers=headers)

    def export(request: Request):
        state = state_or_failure(request)
        require_ok(request, state)
        run_id = request.path_params["run_id"]
        lookup(state, run_id)
        run = state.stored_run(run_id)
        with tempfile.TemporaryDirectory(prefix="govssl-export-") as folder:
            target = Path(folder) / f"{run_id}.zip"
            export_run(run, target)
            data = target.read_bytes()
        return Response(data, media_type="application/zip",
                        headers={"content-disposition": f'attachment; filename="{run_id}.zip"'})

    def diff(request: Request):
        state = state_or_failure(request)
        require_ok(request, state)
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        for name, value in (("a", a), ("b", b)):
            if state.row(value) is None:
                raise HTTPException(404 if value else 400, f"{name}: no run '{value}' in {view.label}")
        result = diff_runs(state.stored_run(a), state.stored_run(b))
        return page(request, "diff.html", state, diff=result, a=state.row(a), b=state.row(b))

    def model(request: Request):
        state = state_or_failure(request)
        require_ok(request, state)
        sha = request.path_params["sha256"].lower()
        rows = [r for r in state.find(model=sha) if r["model_sha256"] == sha]
        if not rows:
            raise HTTPException(404, f"no run of a model with sha256 {sha} in {view.label}")
        now = datetime.now(timezone.utc)
        waivers = [{**asdict(w), "active": w.active(now)} for w in state.snapshot.waivers if w.model_sha256 == sha]
        monitoring = [m for m in state.monitoring() if m["model_sha256"] == sha]
        # audits and monitoring results together, newest first (a result is never older than its audit)
        # (a stable sort: on the same second a result stays before, that is newer than, its audit)
        history = sorted([{"kind": "monitoring", **m} for m in monitoring] + [{"kind": "audit", **r} for r in rows],
                         key=lambda entry: entry["created_at"], reverse=True)
        shown, number, pages = _paged(history, request.query_params.get("page", "1"))
        return page(request, "model.html", state, sha256=sha, history=shown, total=len(rows),
                    n_monitoring=len(monitoring), page=number, pages=pages, latest=rows[:2], waivers=waivers)

    def integrity(request: Request):
        full = request.query_params.get("full") == "1"
        state = view.state(force=full)
        live_head, head_problem = None, ""
        try:
            live_head = view.store.head()
        except GovsslError as exc:
            head_problem = str(exc)
        files = None
        if full and state.ok:
            files = view.verify_files()
        return page(request, "integrity.html", state, status=200 if state.ok and (files is None or files.ok) else 503,
                    live_head=live_head, head_problem=head_problem, files=files, full=full)

    async def on_http(request: Request, exc: HTTPException):
        state = view._state
        return page(request, "error.html", state, status=exc.status_code, title=str(exc.status_code),
                    message=exc.detail)

    async def on_untrusted(request: Request, exc: Exception):
        state = view._state
        return page(request, "error.html", state, status=503, title="integrity failure",
                    message="Nothing is shown from a store that does not verify: see the integrity page.")

    async def on_govssl(request: Request, exc: GovsslError):
        # a store or file that does not verify: 503; a run or file that is not there: 404
        status = 503 if isinstance(exc, IntegrityError) else 404 if isinstance(exc, (DataError, StoreError)) else 500
        return page(request, "error.html", view._state, status=status,
                    title="integrity failure" if isinstance(exc, IntegrityError) else "error", message=str(exc))

    async def on_bug(request: Request, exc: Exception):
        log.exception("internal error while serving %s", request.url.path)
        return PlainTextResponse("500 internal error: this is a bug in govssl; the server's log has the details\n",
                                 status_code=500)

    routes = [
        Route("/", runs),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/charts/{name}.svg", chart),
        Route("/runs/{run_id}/documents/{path:path}", document),
        Route("/runs/{run_id}/export.zip", export),
        Route("/diff", diff),
        Route("/models/{sha256}", model),
        Route("/integrity", integrity),
        Mount("/static", StaticFiles(directory=_STATIC), name="static"),
    ]
    handlers = {HTTPException: on_http, _Untrusted: on_untrusted, GovsslError: on_govssl, Exception: on_bug}
    return Starlette(routes=routes, exception_handlers=handlers,
                     middleware=[Middleware(_Security, token=token)])


class _Untrusted(Exception):
    """A data page asked for while the store does not verify."""


def _document(run, position: int, artifact) -> dict:
    """How the run page links an artifact: by its path in the run's folder (so the documents'
    relative links work), by position for a file outside it."""
    path = Path(artifact.path)
    folder = Path(run.out_dir)
    if path.is_relative_to(folder) and path != folder:
        href = PurePosixPath(*path.relative_to(folder).parts).as_posix()
    else:
        href = f"artifact-{position}/{path.name}"
    return {"kind": artifact.kind, "name": href, "href": href, "sha256": artifact.sha256, "size": artifact.size}


def _media_type(path: Path) -> str:
    suffix = path.suffix.lower()
    known = {".md": "text/plain; charset=utf-8", ".json": "application/json", ".html": "text/html; charset=utf-8",
             ".svg": "image/svg+xml", ".csv": "text/csv; charset=utf-8", ".txt": "text/plain; charset=utf-8",
             ".pdf": "application/pdf", ".png": "image/png"}
    return known.get(suffix) or "application/octet-stream"
