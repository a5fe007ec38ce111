"""Alembic's environment: runs on the connection atelier.server.db.migrate hands over (no alembic.ini)."""

from alembic import context
from sqlalchemy import create_engine

from atelier.server.models import Base

connection = context.config.attributes.get("connection")


def run(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things, so later revisions copy the table instead
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:   # the alembic command line: alembic -x url=sqlite:///PATH upgrade head
    with create_engine(context.get_x_argument(as_dictionary=True)["url"]).connect() as fresh:
        run(fresh)
