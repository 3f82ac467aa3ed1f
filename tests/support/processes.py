"""Real gateway processes (uvicorn, over loopback) for cross-process and end-to-end tests."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

from paygate_server.crypto import MasterKey
from paygate_server.merchants import create_merchant
from paygate_server.procs import ServiceProcess, gateway_command
from paygate_server.storage import create_database
from tests.support.app import TEST_MASTER_KEY
from tests.support.signing import Credentials

__all__ = ["gateway_env", "start_gateway", "make_merchant"]


def gateway_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "PAYGATE_DATABASE_URL": database_url,
        "PAYGATE_DATA_DIR": str(data_dir),
        "PAYGATE_MASTER_KEY": TEST_MASTER_KEY,
        "PAYGATE_KEY_CACHE_TTL_S": "0",
        **extra,
    }


@contextlib.contextmanager
def start_gateway(database_url: str, data_dir: Path, *, name: str = "gateway", workers: int = 1,
                  **extra_env: str) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(lambda fd: gateway_command(fd, workers=workers),
                          log_path=data_dir / f"{name}.log",
                          env=gateway_env(database_url, data_dir, **extra_env))
    with proc:
        yield proc


def make_merchant(database_url: str, name: str = "Shop", origins: list[str] | None = None) -> Credentials:
    async def run() -> Credentials:
        db = create_database(database_url)
        try:
            async with db.write() as conn:
                pair = await create_merchant(conn, MasterKey(bytes.fromhex(TEST_MASTER_KEY)), name=name,
                                             origins=origins or ["http://127.0.0.1:9"])
        finally:
            await db.dispose()
        return Credentials(pair.merchant_id, pair.api_key, pair.signing_secret)

    return asyncio.run(run())
