"""A fake clock for the gateway (``paygate_server.clock.set_source``): time moves only when
the test says so, so timing rules are checked without waiting for them."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from paygate_server import clock

__all__ = ["FakeClock", "fake_clock"]

_US = 1_000_000


class FakeClock:
    def __init__(self, start_us: int) -> None:
        self.start_us = start_us
        self.now_us = start_us

    def __call__(self) -> int:
        return self.now_us

    @property
    def elapsed_s(self) -> float:
        return (self.now_us - self.start_us) / _US

    def set_elapsed(self, seconds: float) -> None:
        """Move to ``seconds`` after the start (forward only: time never goes back)."""
        target = self.start_us + round(seconds * _US)
        assert target >= self.now_us, "a clock does not go back"
        self.now_us = target


@contextlib.contextmanager
def fake_clock() -> Iterator[FakeClock]:
    """The gateway's clock, frozen at the real now until the test moves it."""
    fake = FakeClock(clock.now_us())
    clock.set_source(fake)
    try:
        yield fake
    finally:
        clock.set_source(None)
