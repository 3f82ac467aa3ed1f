"""Time in one representation: integer microseconds since the Unix epoch (UTC).

Stored as BIGINT in both databases (exact, sortable, cheap to compare) and rendered as
RFC 3339 UTC with ``Z`` on the wire (SPEC §2).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

__all__ = ["now_us", "to_rfc3339", "parse_rfc3339_seconds", "from_datetime"]

_US = 1_000_000


def now_us() -> int:
    return time.time_ns() // 1000


def to_rfc3339(us: int | None) -> str | None:
    if us is None:
        return None
    dt = datetime.fromtimestamp(us // _US, tz=timezone.utc).replace(microsecond=us % _US)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def from_datetime(dt: datetime) -> int:
    return int(dt.timestamp() * _US)


def parse_rfc3339_seconds(value: str) -> int | None:
    """Parse the strict request timestamp form ``YYYY-MM-DDTHH:MM:SSZ``; seconds since epoch."""
    if len(value) != 20 or value[-1] != "Z" or value[10] != "T":
        return None
    try:
        dt = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return int(dt.replace(tzinfo=timezone.utc).timestamp())
