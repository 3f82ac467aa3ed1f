"""Time in one representation: integer microseconds since the Unix epoch (UTC).

Stored as BIGINT in both databases (exact, sortable, cheap to compare) and rendered as
RFC 3339 UTC with ``Z`` on the wire (SPEC §2).

Every timestamp the gateway stores or compares comes from :func:`now_us`, so a test can run
the gateway on another clock (:func:`set_source`) and check timing rules — e.g. the
reconciler's deadlines — without waiting for them.
"""
from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from datetime import date, datetime

__all__ = ["now_us", "set_source", "to_rfc3339", "parse_rfc3339_seconds", "parse_day"]

_US = 1_000_000


def _wall_us() -> int:
    return time.time_ns() // 1000


_source: Callable[[], int] = _wall_us


def now_us() -> int:
    return _source()


def set_source(source: Callable[[], int] | None) -> None:
    """Read the time from ``source`` (microseconds since the epoch) instead of the wall
    clock; None goes back to the wall clock. For tests: a fake clock."""
    global _source
    _source = _wall_us if source is None else source


_REQUEST_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z", re.ASCII)


def to_rfc3339(us: int | None) -> str | None:
    """Milliseconds precision, e.g. ``2026-11-25T06:02:29.123Z`` (every response renders a few:
    ``time.gmtime`` and %-formatting cost a third of ``datetime.strftime``)."""
    if us is None:
        return None
    seconds, rest = divmod(us, _US)
    t = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - the measured fast path
        t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, rest // 1000)


def parse_rfc3339_seconds(value: str) -> int | None:
    """Parse the strict request timestamp form ``YYYY-MM-DDTHH:MM:SSZ``; seconds since epoch."""
    match = _REQUEST_TIMESTAMP.fullmatch(value) if len(value) == 20 else None
    if match is None:
        return None
    fields = tuple(int(part) for part in match.groups())
    try:
        datetime(*fields)  # type: ignore[arg-type]  # six ints, by the pattern; validates the calendar (month 1-12, day of that month, 23:59:59)
    except ValueError:
        return None
    return calendar.timegm(fields)


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(text: str) -> date | None:
    """A day typed as ``YYYY-MM-DD`` in ASCII digits (`paygate reconcile settlement --date`,
    the console's settlement and search forms), None for anything else. ``date.fromisoformat``
    alone also takes ``20260131``, ``2026-W05-6`` and ``2026-031``, so a typo could reconcile
    another day than the one meant."""
    if not _DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
