"""The data directory is private (hardening #15.3): 0700 folders, 0600 files — the SQLite
database with its -wal and -shm, the master key — whatever the caller's umask."""
from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from paygate_server.storage import create_database


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _all_private(root: Path) -> dict[str, int]:
    """Everything under ``root`` that is not private (name → mode)."""
    loose = {str(root): _mode(root)} if _mode(root) != 0o700 else {}
    for path in root.rglob("*"):
        want = 0o700 if path.is_dir() else 0o600
        if _mode(path) != want:
            loose[str(path.relative_to(root))] = _mode(path)
    return loose


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what most shells have: files 0644 unless the gateway says otherwise
    try:
        yield
    finally:
        os.umask(old)


def test_a_fresh_start_makes_a_private_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "paygate-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    env["PAYGATE_DATA_DIR"] = str(data)
    for args in (("db", "upgrade"), ("merchants", "create", "--name", "Shop")):
        done = subprocess.run([sys.executable, "-m", "paygate_server", *args], env=env, capture_output=True,
                              text=True, timeout=120, preexec_fn=lambda: os.umask(0o022))
        assert done.returncode == 0, done.stderr
    names = {p.name for p in data.iterdir()}
    assert {"paygate.db", "master.key"} <= names, names
    assert _all_private(data) == {}


def test_sqlite_files_are_private_and_old_ones_are_tightened(tmp_path: Path, loose_umask: None) -> None:
    async def write(path: Path) -> None:
        db = create_database(f"sqlite:///{path}")
        try:
            async with db.write() as conn:
                await conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
                await conn.execute(text("INSERT INTO t VALUES (1)"))
            # The -wal and -shm exist while a connection is open.
            assert {p.name for p in path.parent.iterdir()} >= {path.name, f"{path.name}-wal", f"{path.name}-shm"}
            assert _all_private(path.parent) == {}
        finally:
            await db.dispose()

    path = tmp_path / "data" / "paygate.db"
    asyncio.run(write(path))
    # An install from before: world-readable files are tightened at the next start.
    for p in path.parent.iterdir():
        os.chmod(p, 0o644)
    asyncio.run(write(path))


def test_tightening_an_existing_file_keeps_this_process_s_locks_on_it(tmp_path: Path) -> None:
    """SQLite's POSIX locks die with any close() of the file in this process: tightening a
    database file another connection holds must not open it (a corrupt database)."""
    import fcntl

    from paygate_server.private_files import private_file

    path = tmp_path / "held.db"
    path.write_bytes(b"x")
    with open(path, "r+b") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)  # as a SQLite connection holds its lock bytes
        private_file(path)
        probe = ("import fcntl, sys\nf = open(sys.argv[1], 'r+b')\n"
                 "try:\n    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(3)\n")
        assert subprocess.run([sys.executable, "-c", probe, str(path)]).returncode == 3, "the lock was dropped"
