"""The one rule for the day of a settlement comparison, the console's and the CLI's:
``YYYY-MM-DD``, today (UTC) or earlier."""
from __future__ import annotations

import datetime as dt

import pytest

from paygate_server.processing.settlement import DayNotYet, NotADay, settlement_day

TODAY = dt.date(2026, 12, 7)


def test_today_and_earlier_days_are_days() -> None:
    assert settlement_day("2026-12-07", TODAY) == TODAY
    assert settlement_day("2024-02-29", TODAY) == dt.date(2024, 2, 29)


def test_a_day_to_come_is_refused() -> None:
    with pytest.raises(DayNotYet):
        settlement_day("2026-12-08", TODAY)


@pytest.mark.parametrize("typed", ["20261207", "2026-W49-1", "2026-12-7", "2026-02-30", " 2026-12-07", "", "٢٠٢٦-١٢-٠٧"])
def test_anything_but_yyyy_mm_dd_is_not_a_day(typed: str) -> None:
    with pytest.raises(NotADay):
        settlement_day(typed, TODAY)


def test_without_a_today_the_clock_decides() -> None:
    today = dt.datetime.now(dt.UTC).date()
    assert settlement_day(today.isoformat()) == today
    with pytest.raises(DayNotYet):
        settlement_day((today + dt.timedelta(days=2)).isoformat())
