"""The simulator's clock: paygate's clock plus a lead that tests set.

Hold expiry is measured on it. It reads :func:`paygate_server.clock.now_us` (so an
in-process test can fake it with ``clock.set_source``) plus the offset that
``POST /v1/_clock`` moves forward — how a test of a separate simulator process makes a
hold expire without waiting for it. The offset is kept in the store, so the clock never
runs backwards across a restart.
"""

from __future__ import annotations

import datetime as _dt

from paygate_server import clock

from .store import Store

__all__ = ["SimClock"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class SimClock:
    def __init__(self, store: Store) -> None:
        self._store = store

    def now_us(self) -> int:
        return clock.now_us() + self._store.clock_offset_us

    def now(self) -> _dt.datetime:
        return _EPOCH + _dt.timedelta(microseconds=self.now_us())

    @property
    def offset_us(self) -> int:
        return self._store.clock_offset_us
