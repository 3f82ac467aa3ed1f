"""The database every seed starts from: migrated, one merchant with a webhook endpoint for
every event type, a checkout key.

Built once per process (migrations and an RSA key take a quarter of a CPU-second, some
tenth of a chunk of 50 seeds), kept in memory, and written out for each run (each
``run_seeds`` call has a scratch directory of its own), then copied per seed. Its ids come
from a fixed source, so every process's template is the same but for its card key (drawn
from the OS: nothing of a seed's history depends on it).
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path

from paygate_server import ids
from paygate_server.cards.keystore import CardKeyStore
from paygate_server.crypto import MasterKey, load_master_key
from paygate_server.merchants import create_merchant
from paygate_server.storage import create_database
from paygate_server.storage.migrate import upgrade
from paygate_server.storage.sqlite_copy import copy_committed, sqlite_url
from paygate_server.webhooks.model import create_endpoint

__all__ = ["Template"]

MASTER_KEY = "5e" * 32  # the simulation's own: its databases hold no real secret
MERCHANT_URL = "https://shop.invalid/webhooks"


@dataclass(frozen=True)
class Template:
    path: Path
    merchant_id: str
    master_key: str = MASTER_KEY

    @property
    def master(self) -> MasterKey:
        return load_master_key(self.master_key, self.path.with_suffix(".key"))

    @classmethod
    def create(cls, directory: Path) -> Template:
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("template*"):
            old.unlink()
        path = directory / "template.db"
        if not _BUILT:
            building = directory / "template-building.db"
            ids.set_source(random.Random(0).randbytes)
            try:
                merchant_id = asyncio.run(_build(building))
            finally:
                ids.set_source(None)
            copy_committed(building, path)
            _BUILT.append((merchant_id, path.read_bytes()))
        else:
            path.write_bytes(_BUILT[0][1])
        return cls(path, _BUILT[0][0])


# This process's template, once built: (merchant id, the database file's bytes).
_BUILT: list[tuple[str, bytes]] = []


async def _build(path: Path) -> str:
    db = create_database(sqlite_url(path))
    try:
        await upgrade(db)
        master = load_master_key(MASTER_KEY, path.with_suffix(".key"))
        async with db.write() as conn:
            pair = await create_merchant(conn, master, name="Simulated Shop", origins=["http://127.0.0.1:9"])
            # Where its events go: the simulation's merchant (simulation/merchant.py), not a network.
            await create_endpoint(conn, master, pair.merchant_id, MERCHANT_URL, None)
        await CardKeyStore(db, master).ensure_active_key()
        return pair.merchant_id
    finally:
        await db.dispose()
