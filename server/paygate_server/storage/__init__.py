"""Storage: the one home of SQL and of the choice of database.

The payment core reaches it through one port (:mod:`.port`, :func:`open_payment_store`);
SQLAlchemy Core tables, the async database handle, migrations and change capture live
here too. Nothing outside this package writes SQL or asks which database it runs on.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from paygate_server.lazy import lazy_exports
from paygate_server.storage.opening import CannotOpen
from paygate_server.storage.schema_version import SchemaMismatch, check_schema

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from paygate_server.storage.engine import Database, create_database
    from paygate_server.storage.migrate import upgrade
    from paygate_server.storage.port import PaymentStore

    # One unit of work's connection (``Database.write()``, a relay lease's ``write()``), as
    # code outside this package holds it: handed on to storage functions that join that
    # transaction, never used for a statement of its own.
    Transaction: TypeAlias = AsyncConnection

__all__ = ["CannotOpen", "Database", "PaymentStore", "Transaction", "create_database", "open_payment_store", "SchemaMismatch",
           "check_schema", "upgrade"]

# Imported on first use (PEP 562), not with the package: SQLAlchemy's asyncio extension
# (and with it its ORM) and Alembic cost more than the rest of a command's start-up, and the
# package is imported by whatever reads a database URL (config.py) — `paygate --help` too.
# tests/server/test_startup_imports.py checks what the command line and the simulator load.
__getattr__ = lazy_exports(__name__, {
    "Database": ".engine",
    "create_database": ".engine",
    "PaymentStore": ".port",
    "Transaction": "sqlalchemy.ext.asyncio:AsyncConnection",
    "upgrade": ".migrate",
})


def open_payment_store(db: Database) -> PaymentStore:
    """The payment core's store for ``db``'s kind of database."""
    if db.is_sqlite:
        from paygate_server.storage.payments import SqlitePaymentStore
        return SqlitePaymentStore(db)
    from paygate_server.storage.payments_pg import PostgresPaymentStore
    return PostgresPaymentStore(db)
