"""What a domain that plugs into the gateway implements, and the order check.

An extension is an object (``app.EXTENSIONS`` lists them, in set-up order) with no-op
defaults for every hook, so a domain overrides only what it uses. Each one declares the
gateway slots it ``requires`` (filled by the core or by an extension before it) and the
ones it ``provides``: :func:`check_order` refuses a list where an extension would run
before what it needs, at start-up and before anything is opened, instead of a consumer
silently never registered.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from starlette.middleware import Middleware
    from starlette.routing import BaseRoute

    from paygate_server.processing.connectors import Connector
    from paygate_server.state import Gateway

__all__ = ["Extension", "ExtensionOrderError", "check_order", "check_provided", "refresh_every"]

log = logging.getLogger(__name__)


async def refresh_every(interval_s: Callable[[], float], what: str, reload: Callable[[], Awaitable[None]]) -> None:
    """A cache kept current for ever (a :meth:`Extension.refresh_tasks` task): ``reload``
    every ``interval_s()`` seconds (read each time); a failure is logged, the next try comes."""
    # Here, not at the top: command modules import this one to build their parsers, and
    # `paygate --help` loads no database code (tests/server/test_startup_imports.py).
    from paygate_server.storage.availability import log_failure

    while True:
        await asyncio.sleep(interval_s())
        try:
            await reload()
        except Exception:
            log_failure(log, "reloading %s failed", what)

# Filled by build_gateway itself before any extension's setup runs.
CORE_SLOTS = frozenset({"processing", "refunds", "reconciler"})


class ExtensionOrderError(RuntimeError):
    """The extension list cannot be set up as given (a start-up, operator-facing error)."""


class Extension:
    name: ClassVar[str] = "extension"
    requires: ClassVar[tuple[str, ...]] = ()  # gateway slots that must be filled before setup
    provides: ClassVar[tuple[str, ...]] = ()  # gateway slots this setup fills
    routes: ClassVar[Sequence[BaseRoute]] = ()
    middleware: ClassVar[Sequence[Middleware]] = ()  # outermost last

    def wrap_connector(self, connector: Connector) -> Connector:
        """Called before any service gets the connector; the result is what they all get."""
        return connector

    async def setup(self, gateway: Gateway) -> None:
        """Fill the slots in ``provides`` (and add consumers, listeners …)."""

    def background_tasks(self, gateway: Gateway) -> list[Coroutine[Any, Any, None]]:
        """Long-running work, started only inside ``paygate serve`` (``run_background``)."""
        return []

    def refresh_tasks(self, gateway: Gateway) -> list[Coroutine[Any, Any, None]]:
        """Keeping this process's caches current (e.g. keys rotated by another process),
        started in every process that serves the app, ``PAYGATE_RUN_BACKGROUND=0`` included."""
        return []

    async def teardown(self, gateway: Gateway) -> None:
        """Release what setup opened; runs for every extension, in list order."""

    def __repr__(self) -> str:
        return f"<extension {self.name}>"


def check_order(extensions: Sequence[Extension], slots: frozenset[str]) -> None:
    """Raise :class:`ExtensionOrderError` unless every extension's ``requires`` is provided
    by the core or by an extension listed before it, and every slot has one provider."""
    providers: dict[str, str] = {slot: "the core" for slot in CORE_SLOTS}
    for extension in extensions:
        for slot in (*extension.requires, *extension.provides):
            if slot not in slots:
                raise ExtensionOrderError(f"extension {extension.name!r} names {slot!r}, "
                                          f"which is not a Gateway service slot")
        for slot in extension.provides:
            if slot in providers:
                raise ExtensionOrderError(f"extensions {providers[slot]!r} and {extension.name!r} "
                                          f"both provide {slot!r}")
            providers[slot] = extension.name
    available = set(CORE_SLOTS)
    for extension in extensions:
        for slot in extension.requires:
            if slot not in available:
                where = (f"extension {providers[slot]!r} provides it but is listed after it"
                         if slot in providers else "no listed extension provides it")
                raise ExtensionOrderError(f"extension {extension.name!r} requires {slot!r}: {where}")
        available.update(extension.provides)


def check_provided(extension: Extension, gateway: Gateway) -> None:
    """After ``setup``: what the extension declared is really there."""
    missing = [slot for slot in extension.provides if not gateway.has(slot)]
    if missing:
        raise ExtensionOrderError(f"extension {extension.name!r} declares {', '.join(missing)} "
                                  "but its setup did not fill them")
