"""Webhooks (SPEC §6, Standard Webhooks): endpoints, events from the change stream, delivery.

- :mod:`.endpoints` — ``/api/v1/webhooks`` (create, list, delete);
- :mod:`.events` — the relay consumer that turns status transitions into events and
  delivery rows, exactly once per change;
- :mod:`.dispatcher` — signs and sends deliveries with retries, in every worker;
- :mod:`.guard` — URL rules and the private-address guard (creation and every delivery);
- :mod:`.model` — event types, endpoint secrets, signatures and wire shapes.

Their rows are read and written by ``paygate_server.storage.webhook_endpoints``,
``.webhook_events`` and ``.webhook_deliveries``.

As a gateway extension (:data:`extension`) it adds the routes, registers its consumer with
the relay built by :mod:`paygate_server.cdc` (it ``requires`` the relay, so the order check
refuses a list with cdc after it) and runs the dispatcher inside ``paygate serve``.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paygate_server.webhooks.gateway import WebhooksExtension, consumer_for, extension

__all__ = ["WebhooksExtension", "consumer_for", "extension"]


def __getattr__(name: str) -> object:
    # The extension (its routes, dispatcher and consumer, and through them the database
    # engine) loads on first use, not with the package: the package is imported by its
    # commands (webhooks/cli.py) too, `paygate --help` included.
    if name not in __all__:
        # (an AttributeError lets ``from paygate_server.webhooks import guard`` import the submodule)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("paygate_server.webhooks.gateway"), name)
    globals()[name] = value
    return value
