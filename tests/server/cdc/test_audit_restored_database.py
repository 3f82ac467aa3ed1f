"""``paygate audit verify`` on a database older than its archive (the docs walk-through:
a demo's SQLite backup restored under its newer archive answered "OK", counting the changes
the restore lost as pruned). Above what pruning may have removed nothing ever leaves the
change log, so an archived change the database lacks there is a problem; at or below it
(pruned, or deleted by a run that has not recorded its end yet) it is not.

The restore is made by deleting the newest changes through pruning's own guard, then
closing the guard without recording a prune: what a backup taken before them looks like."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from paygate_server.cdc.archive import ArchiveReader
from paygate_server.cdc.audit import verify_archive
from paygate_server.cdc.store import LocalStore
from paygate_server.storage import Database
from tests.server.cdc.test_cdc_archive import _archive, _load


async def _lose_changes_after(db: Database, keep_through: int, *, guard_left_open: bool) -> list[int]:
    async with db.write() as conn:
        newest = (await conn.execute(text("SELECT max(id) FROM change_log"))).scalar_one()
        await conn.execute(text("UPDATE change_log_prune SET through_id = :hi WHERE id = 1"), {"hi": newest})
        await conn.execute(text("DELETE FROM change_log WHERE id > :keep"), {"keep": keep_through})
        if not guard_left_open:
            await conn.execute(text("UPDATE change_log_prune SET through_id = 0 WHERE id = 1"))
    return list(range(keep_through + 1, newest + 1))


async def test_changes_a_restored_database_lacks_are_a_problem_not_pruned(db: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    await _load(db)
    await _archive(db, store)
    lost = await _lose_changes_after(db, 7, guard_left_open=False)
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok, report.text()
    assert (report.not_in_database.count, report.archive_only) == (len(lost), 0), report.text()
    assert report.not_in_database.first == lost[:len(report.not_in_database.first)]
    assert "restored from a backup older than the archive" in report.text()
    assert report.to_json()["notInDatabaseCount"] == len(lost)


async def test_changes_an_unfinished_prune_run_deleted_count_as_pruned(db: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    await _load(db)
    await _archive(db, store)
    lost = await _lose_changes_after(db, 7, guard_left_open=True)
    report = await verify_archive(db, ArchiveReader(store))
    assert (report.not_in_database.count, report.archive_only) == (0, len(lost)), report.text()
