"""Storage: the one home of SQL and of the choice of database.

The payment core reaches it through one port (:mod:`.port`, :func:`open_payment_store`);
SQLAlchemy Core tables, the async database handle, migrations and change capture live
here too. Nothing outside this package writes SQL or asks which database it runs on.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, TypeAlias

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
_LAZY = {
    "Database": ("paygate_server.storage.engine", "Database"),
    "create_database": ("paygate_server.storage.engine", "create_database"),
    "PaymentStore": ("paygate_server.storage.port", "PaymentStore"),
    "Transaction": ("sqlalchemy.ext.asyncio", "AsyncConnection"),
    "upgrade": ("paygate_server.storage.migrate", "upgrade"),
}


def __getattr__(name: str) -> object:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        # (an AttributeError lets ``from paygate_server.storage import vault`` import the submodule)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # once: later look-ups find it without calling here
    return value


def open_payment_store(db: Database) -> PaymentStore:
    """The payment core's store for ``db``'s kind of database."""
    if db.is_sqlite:
        from paygate_server.storage.payments import SqlitePaymentStore
        return SqlitePaymentStore(db)
    from paygate_server.storage.payments_pg import PostgresPaymentStore
    return PostgresPaymentStore(db)
