"""A deterministic asyncio event loop: virtual time, and database threads waited for.

Two things make an ordinary run of the gateway differ from the next with the same inputs:
the clock, and aiosqlite's worker threads. A statement runs on its connection's thread and
its result is handed back with ``call_soon_threadsafe`` whenever the thread is done — so
which task runs next depends on how fast a thread was. This loop removes both:

- **virtual time**: :meth:`SimulatedLoop.time` is a number the loop moves. When nothing is
  ready and no database work is outstanding, the loop jumps to its next timer instead of
  waiting for it (an ``asyncio.sleep(300)`` costs nothing), and the gateway's clock
  (:mod:`paygate_server.clock`) reads the same number;
- **a barrier at every turn**: a future made by aiosqlite (its ``core`` module calls
  ``create_future`` for each statement it hands to its thread) is counted; results coming
  back from threads are not put on the ready queue as they arrive but held, and at the start
  of each turn of the loop (the selector's ``select``, which the loop calls once per turn)
  the loop waits until *every* outstanding statement has come back, then schedules their
  results in the order the statements were submitted. Threads still run the statements,
  but when they finish no longer decides anything.

Everything else is the standard loop: ready callbacks run first-in first-out, timers fire
in order of their time. The loop also counts its turns, and can be told to crash at a turn
(:class:`SimulatedCrash` escapes ``run_until_complete``, the tasks stay where they were:
the simulation abandons them, as a killed process would).

Only public interfaces: a ``selector`` given to :class:`asyncio.SelectorEventLoop`, and
the loop's public methods ``time``, ``create_future``, ``call_soon_threadsafe`` and
``run_in_executor`` overridden (the last runs the function at once: no thread decides).
"""
from __future__ import annotations

import asyncio
import selectors
import sys
import threading
import weakref
from collections.abc import Callable
from contextvars import Context
from typing import Any

__all__ = ["SimulatedCrash", "SimulatedLoop", "Stalled"]

# Modules whose futures are completed from a thread (by call_soon_threadsafe): each
# ``create_future`` call made by them is one statement handed to a worker thread —
# aiosqlite's, and SQLAlchemy's adapter of it (which queues its isolation-level change on
# the connection's queue: the gateway's connections, storage/loop_sqlite.py, run it at
# once and hand its result back the same way). The gateway's connections hand their other
# thread work to ``run_in_executor``, which this loop runs at once. A new release that hands
# work to a thread from elsewhere makes the simulation stop with :class:`Stalled` naming
# this list, never go on nondeterministically.
THREAD_MODULES = frozenset({"aiosqlite.core", "sqlalchemy.dialects.sqlite.aiosqlite"})
# aiosqlite's ``Connection.stop`` queues the sentinel that ends the connection's thread, with
# a future for it. A second ``stop`` of the same connection (SQLAlchemy force-closes a
# connection whose graceful close was cancelled, and that close then stops it again: both
# happen when a crashed process's tasks are cancelled) queues a second sentinel behind the
# first: the thread has ended by then, and that future would never come back. It is not
# counted, and completed here: the thread it asks to stop is stopping.
STOP = "stop"
# A statement of the simulation's small database takes milliseconds; this long means a
# thread is blocked (a lock held by a connection whose owner cannot run meanwhile).
STALL_AFTER_S = 30.0


class SimulatedCrash(BaseException):
    """The loop was told to crash at this turn (a BaseException: no ``except Exception``
    in the gateway's code catches it)."""


class Stalled(Exception):
    """Nothing can run: no ready callback, no timer, no outstanding thread work — or a
    thread's statement never came back."""


def _submission(item: tuple[int, Any, Any, Any]) -> int:
    return item[0]


def _complete(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


class _TurnSelector(selectors.DefaultSelector):
    """The loop's selector: there is no I/O in a simulation; ``select`` is the loop's hook."""

    def __init__(self) -> None:
        super().__init__()
        self.on_turn: Callable[[float | None], None] = lambda timeout: None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.on_turn(timeout)
        return []


class SimulatedLoop(asyncio.SelectorEventLoop):
    def __init__(self, start_s: float = 0.0) -> None:
        selector = _TurnSelector()
        super().__init__(selector)
        selector.on_turn = self._sim_turn
        self._sim_now = start_s
        self._sim_cond = threading.Condition()
        self._sim_submitted: dict[asyncio.Future[Any], int] = {}  # outstanding: future → submission number
        self._sim_next = 0
        self._sim_arrived: list[tuple[int, Callable[..., object], tuple[Any, ...], Context | None]] = []
        self._sim_stopped: weakref.WeakSet[object] = weakref.WeakSet()  # connections told to stop
        self.turns = 0
        self.crash_at_turn: int | None = None

    def time(self) -> float:
        return self._sim_now

    def create_future(self) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.Future(loop=self)  # what the base loop's create_future makes
        caller = sys._getframe(1)  # who asked for it (no frame kept in a cycle)
        if caller.f_globals.get("__name__") in THREAD_MODULES:
            if caller.f_code.co_name == STOP:
                connection = caller.f_locals.get("self")
                if connection in self._sim_stopped:
                    self.call_soon(_complete, future)
                    return future
                self._sim_stopped.add(connection)
            with self._sim_cond:
                self._sim_submitted[future] = self._sim_next
                self._sim_next += 1
        return future

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any,  # type: ignore[override]
                             context: Context | None = None) -> asyncio.Handle:
        """From a worker thread: held until the loop's next turn (see the module's doc)."""
        with self._sim_cond:
            future = args[0] if args else None
            number = self._sim_submitted.pop(future, None) if isinstance(future, asyncio.Future) else None
            if number is None:  # not a counted statement: keep the order of arrival after them
                number = (1 << 62) + len(self._sim_arrived)
            self._sim_arrived.append((number, callback, args, context))
            self._sim_cond.notify_all()
        return asyncio.Handle(callback, args, self, context)  # the caller ignores it (aiosqlite does)

    def run_in_executor(self, executor: Any, func: Callable[..., Any],  # type: ignore[override]
                        *args: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.Future(loop=self)  # never a thread's: not counted
        try:
            future.set_result(func(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, as an executor would
            future.set_exception(exc)
        return future

    def advance(self, seconds: float) -> None:
        """Move the clock forward (a restart's downtime, say)."""
        self._sim_now += max(0.0, seconds)

    def _sim_turn(self, timeout: float | None) -> None:
        self.turns += 1
        if self.crash_at_turn is not None and self.turns >= self.crash_at_turn:
            self.crash_at_turn = None
            raise SimulatedCrash(f"crash at turn {self.turns}")
        with self._sim_cond:
            # Most turns have nothing outstanding and nothing arrived: no wait, nothing to sort.
            if self._sim_submitted and not self._sim_cond.wait_for(lambda: not self._sim_submitted,
                                                                   timeout=STALL_AFTER_S):
                raise Stalled(f"{len(self._sim_submitted)} database statement(s) did not come back "
                              f"in {STALL_AFTER_S:.0f} s")
            arrived = self._sim_arrived
            if arrived:
                self._sim_arrived = []
                arrived.sort(key=_submission)
        for _number, callback, args, context in arrived:
            self.call_soon(callback, *args, context=context)
        if arrived or timeout == 0:
            return
        if timeout is None:
            raise Stalled("every task waits and nothing can wake one: no timer, no database work "
                          f"(or a thread's work was not counted: THREAD_MODULES = {sorted(THREAD_MODULES)})")
        self._sim_now += timeout
