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

from typing import TYPE_CHECKING

from paygate_server.lazy import lazy_exports

if TYPE_CHECKING:
    from paygate_server.webhooks.gateway import WebhooksExtension, consumer_for, extension

__all__ = ["WebhooksExtension", "consumer_for", "extension"]


# The extension (its routes, dispatcher and consumer, and through them the database engine)
# loads on first use, not with the package: the package is imported by its commands
# (webhooks/cli.py) too, `paygate --help` included.
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, ".gateway"))
