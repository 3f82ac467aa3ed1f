"""Storage: SQLAlchemy Core tables, the async database handle, migrations, change capture."""
from __future__ import annotations

from paygate_server.storage.engine import Database, create_database
from paygate_server.storage.migrate import SchemaMismatch, check_schema, upgrade

__all__ = ["Database", "create_database", "SchemaMismatch", "check_schema", "upgrade"]
