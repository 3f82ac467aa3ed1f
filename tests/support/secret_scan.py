"""Where a secret could end up, searched: every file under a gateway's data folder (logs,
the history archive's segments, decompressed) and every column of every table of its
database, as the database returns it (a sealed value is ciphertext: the secret must not be
in it in the clear)."""
from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import select

from paygate_server.storage import create_database
from paygate_server.storage.schema import metadata

__all__ = ["places_holding"]


def _files(root: Path) -> Iterable[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        yield str(path.relative_to(root)), data


async def places_holding(secrets: Iterable[str], *, data_dir: Path, database_url: str) -> list[str]:
    """Every place (``file …`` / ``table.column``) holding one of ``secrets`` in the clear."""
    needles = [s.encode() for s in secrets if s]
    found = [f"file {name}" for name, data in _files(data_dir) if any(n in data for n in needles)]
    db = create_database(database_url)
    try:
        async with db.read() as conn:
            for table in metadata.sorted_tables:
                for row in await conn.execute(select(table)):
                    for column, value in row._mapping.items():
                        raw = value if isinstance(value, bytes | bytearray | memoryview) else str(value).encode()
                        if any(n in bytes(raw) for n in needles):
                            found.append(f"{table.name}.{column}")
    finally:
        await db.dispose()
    return sorted(set(found))
