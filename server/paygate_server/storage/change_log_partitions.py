"""PostgreSQL: ``change_log`` partitioned by id range, so pruning drops whole partitions.

Each partition holds ``PARTITION_IDS`` consecutive ids, ``[lo, hi)``, named after ``lo``.
Partitions are created ahead of need (``PARTITIONS_AHEAD`` beyond the one the next id
falls in) by the migration and by every pruning run, and a DEFAULT partition catches any
insert past the last one, so an insert never fails for want of a partition. Rows that
landed there (creation fell behind) stay there: new partitions start above them (a range
partition may not cover rows the DEFAULT one holds), and pruning deletes them row by row
under the guard (docs/history.md "Retention").

The layout is read from the catalog (``pg_inherits``), never assumed: the width of new
partitions is that of the last one, so a database made with another width keeps its own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PARTITION_IDS", "PARTITIONS_AHEAD", "DEFAULT_PARTITION", "Partition", "LIST_PARTITIONS",
           "parse_partitions", "plan_ahead", "create_statement", "is_partition_name"]

# Ids per partition: at ~1 KB a change, about 1 GB a partition — small enough that the
# rows pruning must keep for want of a whole partition are few, large enough that the
# catalog stays small (a year at 100 payments/s and ~4 changes each: ~12,600 partitions
# created, of which only those within retention exist at any time).
PARTITION_IDS = 1_000_000
# Partitions kept ready beyond the one the next id falls in.
PARTITIONS_AHEAD = 2
DEFAULT_PARTITION = "change_log_default"
_PREFIX = "change_log_p"

# Every partition of change_log with its bound expression.
LIST_PARTITIONS = """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'change_log'::regclass
"""

_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    lo: int  # first id
    hi: int  # first id of the next partition


def partition_name(lo: int) -> str:
    return f"{_PREFIX}{lo:015d}"


def is_partition_name(name: str) -> bool:
    """A partition of change_log (not a table of the declared schema)."""
    return name == DEFAULT_PARTITION or (name.startswith(_PREFIX) and name[len(_PREFIX):].isdigit())


def parse_partitions(rows: list[tuple[str, str]]) -> tuple[list[Partition], bool]:
    """The range partitions by ``lo``, and whether a DEFAULT partition exists."""
    ranges, has_default = [], False
    for name, bound in rows:
        if bound.strip().upper() == "DEFAULT":
            has_default = True
            continue
        match = _BOUND.search(bound)
        if match is None:
            raise ValueError(f"change_log partition {name}: unexpected bound {bound!r}")
        ranges.append(Partition(name, int(match.group(1)), int(match.group(2))))
    return sorted(ranges, key=lambda p: p.lo), has_default


def _round_up(value: int, width: int) -> int:
    return -(-value // width) * width


def plan_ahead(existing: list[Partition], next_id: int, default_max_id: int | None,
               width: int | None = None) -> list[tuple[int, int]]:
    """The ``[lo, hi)`` ranges to create so that ``PARTITIONS_AHEAD`` partitions lie beyond
    the one ``next_id`` falls in. ``default_max_id``: the largest id in the DEFAULT partition
    (None: empty) — new partitions start above it. ``width``: of the last partition, else
    ``PARTITION_IDS``."""
    if existing:
        width = existing[-1].hi - existing[-1].lo
    width = width or PARTITION_IDS
    top = existing[-1].hi if existing else 0
    if default_max_id is not None and default_max_id >= top:
        top = _round_up(default_max_id + 1, width)
    target = (next_id // width + 1 + PARTITIONS_AHEAD) * width
    plan = []
    while top < target:
        plan.append((top, top + width))
        top += width
    return plan


def create_statement(lo: int, hi: int) -> str:
    return f"CREATE TABLE {partition_name(lo)} PARTITION OF change_log FOR VALUES FROM ({lo}) TO ({hi})"
