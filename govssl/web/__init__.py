"""`govssl serve`: a read-only dashboard over the audit store, drawn on the server.

The only package that imports the web framework (Starlette, served by uvicorn). Pages are
sandboxed, autoescaped Jinja templates in ``templates/``; charts are matplotlib SVG
(:mod:`govssl.charts`); there is no JavaScript. The store is opened read-only and read verified
(:mod:`govssl.web._view`); every answer carries a Content-Security-Policy that lets a page load
nothing from anywhere but this server, and no script at all.

Adding a page (monitoring results, say): a route and its handler in ``_app.create_app``, a
template extending ``base.html``, and what it reads as a method of ``_view.State`` over the
verified snapshot (``StoreSnapshot.records`` holds every record the chain walk read, by run).
"""

from govssl.web._app import CSP, create_app
from govssl.web._view import State, StoreView

__all__ = ["CSP", "State", "StoreView", "create_app"]
