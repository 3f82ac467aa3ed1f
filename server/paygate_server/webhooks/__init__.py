"""Webhooks (SPEC §6, Standard Webhooks): endpoints, events from the change stream, delivery.

- :mod:`.endpoints` — ``/api/v1/webhooks`` (create, list, delete);
- :mod:`.events` — the relay consumer that turns status transitions into events and
  delivery rows, exactly once per change;
- :mod:`.dispatcher` — signs and sends deliveries with retries, in every worker;
- :mod:`.guard` — URL rules and the private-address guard (creation and every delivery).

As a gateway extension it adds the routes, registers its consumer with the relay built by
:mod:`paygate_server.cdc` (listed before it in ``app.EXTENSIONS``) and runs the dispatcher
inside ``paygate serve``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Coroutine

from paygate_server.webhooks.dispatcher import Dispatcher
from paygate_server.webhooks.endpoints import routes
from paygate_server.webhooks.events import WebhookConsumer
from paygate_server.webhooks.repository import EVENT_TYPES

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["routes", "setup", "background_tasks", "teardown", "Dispatcher", "WebhookConsumer", "EVENT_TYPES"]


async def setup(gateway: Gateway) -> None:
    dispatcher = Dispatcher(gateway.db, gateway.master_key, gateway.settings)
    gateway.services["webhook_dispatcher"] = dispatcher
    relay = gateway.services.get("relay")
    if relay is not None:
        relay.add(WebhookConsumer(batch_size=gateway.settings.relay_batch_size, on_created=dispatcher.wake))


def background_tasks(gateway: Gateway) -> list[Coroutine[Any, Any, None]]:
    return [gateway.services["webhook_dispatcher"].run_forever()]


async def teardown(gateway: Gateway) -> None:
    await gateway.services["webhook_dispatcher"].close()
