"""The wire's time formats, checked against the standard library's datetime."""
from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest

from paygate_server.clock import parse_day, parse_rfc3339_seconds, to_rfc3339


def test_rendering_and_parsing_agree_with_datetime() -> None:
    rng = random.Random(8)
    for _ in range(20_000):
        us = rng.randrange(0, 4_102_444_800_000_000)  # 1970 .. 2100
        dt = datetime.fromtimestamp(us // 1_000_000, tz=UTC)
        assert to_rfc3339(us) == dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{us % 1_000_000 // 1000:03d}Z"
        assert parse_rfc3339_seconds(dt.strftime("%Y-%m-%dT%H:%M:%SZ")) == us // 1_000_000
    assert to_rfc3339(None) is None
    assert to_rfc3339(1_697_379_751_999_999) == "2023-10-15T14:22:31.999Z"


@pytest.mark.parametrize("value", [
    "2023-02-30T00:00:00Z", "2023-13-01T00:00:00Z", "2023-10-15T24:00:00Z", "2023-10-15T14:60:00Z",
    "2023-10-15 14:22:31Z", "2023-10-15T14:22:31+00", "2023-10-15T14:22:31.5Z", "2023-10-15T14:22:31z",
    "\uff12\uff10\uff12\uff13-10-15T14:22:31Z", "0000-01-01T00:00:00Z", "", "2023-10-15T14:22:31ZZ",
])
def test_anything_but_strict_utc_seconds_is_refused(value: str) -> None:
    assert parse_rfc3339_seconds(value) is None


@pytest.mark.parametrize("text", ["20260131", "2026-W05-6", "2026-031", "2026-1-31", " 2026-01-31",
                                  "\u0662\u0660\u0662\u0666-01-31", "2026-02-30", "0000-01-01", ""])
def test_parse_day_takes_only_yyyy_mm_dd(text: str) -> None:
    # Once (reconcile settlement --date, the console's settlement form): date.fromisoformat,
    # which read "20260131" as that day and "2026-W05-6" as 2026-01-31 too.
    assert parse_day(text) is None


def test_parse_day() -> None:
    assert parse_day("2026-01-31") == date(2026, 1, 31)
    assert parse_day("9999-12-31") == date.max

