"""``paygate vault rotate-data-key`` as an operator runs it (a real subprocess)."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from paygate_server.storage import create_database
from paygate_server.storage.schema import sealed_keys
from paygate_server.vault.datakeys import DATA_KEY_PURPOSE
from tests.support.app import TEST_MASTER_KEY


def _paygate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paygate_server", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)


def _data_keys(url: str) -> dict[str, str]:
    async def run() -> dict[str, str]:
        db = create_database(url)
        try:
            async with db.read() as conn:
                rows = await conn.execute(select(sealed_keys.c.kid, sealed_keys.c.state)
                                          .where(sealed_keys.c.purpose == DATA_KEY_PURPOSE))
                return {r.kid: r.state for r in rows}
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_rotate_data_key(fresh_database_url: str, tmp_path: Path) -> None:
    env = {"PAYGATE_DATABASE_URL": fresh_database_url, "PAYGATE_DATA_DIR": str(tmp_path),
           "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}
    first = _paygate("vault", "rotate-data-key", "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"version": 1, "retired": []}
    second = _paygate("vault", "rotate-data-key", env=env)
    assert second.returncode == 0, second.stderr
    assert "version 2 is now active" in second.stdout and "retired 1" in second.stdout
    assert _data_keys(fresh_database_url) == {"vdk_1": "retired", "vdk_2": "active"}
