"""Alembic environment: always driven programmatically by paygate_server.storage.migrate."""
from __future__ import annotations

from alembic import context

from paygate_server.storage.change_log_partitions import is_partition_name
from paygate_server.storage.schema import metadata


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    # change_log's partitions (PostgreSQL) are made at run time, not declared.
    return not (type_ == "table" and name is not None and is_partition_name(name))


connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  include_name=_include_name)
with context.begin_transaction():
    context.run_migrations()
