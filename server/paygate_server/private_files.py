"""Files and folders the gateway keeps: readable by its own user only.

The data directory holds the master key file, the SQLite database (with its ``-wal`` and
``-shm``), logs, the change archive and the simulator's store — any of them lets a reader
learn or forge payment data. So folders the gateway creates are 0700 and files 0600.
``paygate`` sets the umask to 077 first thing (children it starts inherit it); the
helpers here set the modes explicitly too, so an embedding process with a looser umask
gets the same.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["PRIVATE_UMASK", "fsync_dir", "private_dir", "private_file", "private_temp_file", "use_private_umask"]

PRIVATE_UMASK = 0o077
_DIR_MODE = 0o700
_FILE_MODE = 0o600


def use_private_umask() -> None:
    """Everything this process (and its children) creates from now on is private."""
    os.umask(PRIVATE_UMASK)


def fsync_dir(path: Path) -> None:
    """Make the names in folder ``path`` durable (a file's own fsync does not: its name is
    an entry of the folder)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path, *, tighten: bool = True, durable: bool = False) -> Path:
    """Create ``path`` (and missing parents) 0700. With ``tighten``, an existing folder
    owned by us is made 0700 too (never a parent: someone may share it). With ``durable``,
    each folder created is fsynced into its parent, so that a crash cannot lose a folder
    (and the files fsynced in it) that this call created."""
    missing: list[Path] = []
    for p in (path, *path.parents):  # up to the first that exists: its parents exist too
        if p.exists():
            break
        missing.append(p)
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    for created in missing:  # mkdir's mode is filtered by the umask; parents get the default
        os.chmod(created, _DIR_MODE)
    if durable:
        for created in reversed(missing):  # the outermost first: each in a parent made durable
            fsync_dir(created.parent)
    existing = path.stat()
    # Never a folder shared by design (the sticky bit: /tmp, /var/tmp) nor the root: run as
    # root with PAYGATE_DATA_DIR=/tmp, tightening would lock every other user out of /tmp.
    shared = existing.st_mode & stat.S_ISVTX or path.resolve() == Path(path.anchor or "/")
    if tighten and path not in missing and existing.st_uid == os.getuid() and existing.st_mode & 0o077 and not shared:
        os.chmod(path, _DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists as a 0600 file (created empty if missing; an existing one
    owned by us is tightened). For files another library opens by name, e.g. SQLite's.

    An existing file is never opened here: closing any descriptor of a file drops every
    POSIX lock this process holds on it, and SQLite's connections in this process (another
    ``Database`` on the same file) would go on writing without their locks — a corrupt
    database (sqlite.org/howtocorrupt.html, 2.2)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    except FileExistsError:
        if os.stat(path).st_uid == os.getuid():
            os.chmod(path, _FILE_MODE)
    else:
        os.close(fd)  # a new file: nobody holds a lock on it yet
    return path


def private_temp_file(beside: Path) -> tuple[int, Path]:
    """A new, empty 0600 file in ``beside``'s folder, open for writing (the descriptor and
    its path), to be renamed or linked over ``beside`` once written. Its name is random and
    it is created exclusively, never following a symbolic link: a file someone planted
    under a name we would have used (``.master.key.<pid>.tmp`` in a shared folder) was
    opened and truncated instead, kept its owner and mode, and became the key file."""
    fd, name = tempfile.mkstemp(prefix=f".{beside.name}.", suffix=".tmp", dir=beside.parent)
    return fd, Path(name)
