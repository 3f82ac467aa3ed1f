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

from paygate_server.crypto import load_master_key
from paygate_server.demo import _write_private
from paygate_server.private_files import private_dir, private_temp_file
from paygate_server.storage import create_database
from tests.support.fsyncs import record_fsyncs


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


def _shared_folder(tmp_path: Path) -> Path:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # as /tmp: anyone may create files in it (PAYGATE_DATA_DIR pointed at one)
    return shared


def _plant(path: Path) -> Path:
    path.write_text("planted\n")
    os.chmod(path, 0o666)
    return path


def test_a_file_planted_under_a_temporary_name_never_becomes_the_master_key(tmp_path: Path,
                                                                           loose_umask: None) -> None:
    """The key file was written to ``.master.key.<pid>.tmp``, opened with O_TRUNC and not
    O_EXCL, then linked into place: a file someone left under that name (in a folder they
    can write to) was truncated, given the key, kept its owner and its 0666, and became
    master.key — readable by them."""
    shared = _shared_folder(tmp_path)
    key_file = shared / "master.key"
    planted = _plant(shared / f".{key_file.name}.{os.getpid()}.tmp")
    load_master_key(None, key_file)
    assert _mode(key_file) == 0o600
    assert planted.read_text() == "planted\n" and not os.path.samefile(planted, key_file)
    assert sorted(p.name for p in shared.iterdir()) == sorted([key_file.name, planted.name])  # no temp file left


def test_a_file_planted_under_a_temporary_name_never_becomes_the_demos_saved_secrets(tmp_path: Path,
                                                                                    loose_umask: None) -> None:
    """The same for the demo's saved credentials (the merchant's signing and webhook secrets,
    the operator's password): written through a fresh, exclusive 0600 file, then renamed."""
    shared = _shared_folder(tmp_path)
    saved = shared / "demo-merchant.json"
    planted = _plant(shared / f".{saved.name}.{os.getpid()}.tmp")
    _write_private(saved, {"signingSecret": "sk_test_x"})
    assert _mode(saved) == 0o600 and planted.read_text() == "planted\n"
    fd, temp = private_temp_file(saved)
    os.close(fd)
    assert _mode(temp) == 0o600 and temp.parent == shared and temp.name.startswith(".demo-merchant.json.")


def test_a_new_master_key_file_is_durable_before_it_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Data sealed under a key whose file a crash could lose is lost with it: the key file's
    folder (and the folders created for it, each in its parent) are fsynced before the key
    is returned."""
    synced = record_fsyncs(monkeypatch)
    data = tmp_path / "data"
    load_master_key(None, data / "master.key")
    assert str(tmp_path) in synced and synced[-1] == str(data), synced


def test_a_folder_shared_by_design_is_never_tightened(tmp_path: Path) -> None:
    """An existing data folder of ours is tightened to 0700, unless it carries the sticky
    bit (/tmp, /var/tmp): run as root with PAYGATE_DATA_DIR=/tmp, that locked every other
    user out of /tmp."""
    shared, loose = tmp_path / "tmp", tmp_path / "loose"
    shared.mkdir()
    loose.mkdir()
    os.chmod(shared, 0o1777)
    os.chmod(loose, 0o755)
    load_master_key(None, shared / "master.key")
    private_dir(loose)
    assert _mode(shared) == 0o1777
    assert _mode(shared / "master.key") == 0o600
    assert _mode(loose) == 0o700
