"""Alembic environment of the audit store: migrations run on the connection the store opened.

``AuditStore`` applies them when it opens (see ``govssl.store._migrate``); the ``alembic``
command line works too, with ``-x url=...``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

connection = context.config.attributes.get("connection")
if connection is None:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("give the store's URL: alembic -x url=sqlite:///.govssl/audit.db ...")
    with create_engine(url).begin() as connection:
        context.configure(connection=connection, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
