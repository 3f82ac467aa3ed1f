"""The master key a process runs with, checked against its database before use.

Everything secret in the database — checkout and vault keys, merchants' signing secrets,
processor credentials, webhook secrets — is sealed under one master key
(``PAYGATE_MASTER_KEY``, else ``$PAYGATE_DATA_DIR/master.key``, created on first run).
A process given another key (a different variable, another data folder) could neither open
what is there nor be stopped from sealing new secrets under its own: one database would
then hold secrets under two keys, and half of them would not open for anyone.

So a process proves its key first: the oldest row of ``sealed_keys`` must open under it.
A database with no sealed key yet gets one that only serves this check (purpose
``master-key-check``), sealed under the first key that meets it. The refusal names where
the key came from, never the key.
"""
from __future__ import annotations

import os

from paygate_server.clock import now_us
from paygate_server.config import Settings
from paygate_server.crypto import MasterKey, SealError, load_master_key
from paygate_server.storage.engine import Database
from paygate_server.storage.sealed_keys import SealedKey, add_first_key, oldest_key

__all__ = ["CHECK_PURPOSE", "WrongMasterKey", "database_master_key"]

CHECK_PURPOSE = "master-key-check"
_CHECK_KID = "mkc_1"


class WrongMasterKey(ValueError):
    """The master key given does not open the database's sealed keys."""


async def _check_against(db: Database, master: MasterKey, source: str, oldest: SealedKey | None) -> None:
    """Refuse ``master`` unless the database's oldest sealed key opens under it (adding the
    check key to a database that has none)."""
    if oldest is None:
        await add_first_key(db, CHECK_PURPOSE, lambda: SealedKey(
            _CHECK_KID, CHECK_PURPOSE, master.seal(CHECK_PURPOSE, os.urandom(16), aad=_CHECK_KID.encode()),
            None, "active", now_us()))
        oldest = await oldest_key(db)  # this one, or the one a process starting meanwhile added
        assert oldest is not None
    try:
        master.open(oldest.purpose, oldest.sealed, aad=oldest.kid.encode())
    except SealError:
        raise WrongMasterKey(f"{source} is not the key this database's secrets are sealed with: use the "
                             f"key it was set up with (nothing was changed)") from None


async def database_master_key(settings: Settings, db: Database) -> MasterKey:
    """The configured master key (the key file created on first run), once it is known to
    be ``db``'s."""
    path = settings.master_key_path
    oldest = await oldest_key(db)
    if not settings.master_key and not path.exists() and oldest is not None:
        # A new key file would be the wrong key: not even created.
        raise WrongMasterKey(f"no master key: PAYGATE_MASTER_KEY is not set and there is no key file {path}, "
                             f"but this database's secrets are sealed under one: set the variable or restore "
                             f"the file (nothing was changed)")
    master = load_master_key(settings.master_key, path)
    source = "PAYGATE_MASTER_KEY" if settings.master_key else f"the key file {path}"
    await _check_against(db, master, source, oldest)
    return master
