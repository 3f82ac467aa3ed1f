"""Webhooks as a gateway extension (see the package's docstring), loaded on first use of
``paygate_server.webhooks.extension``."""
from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from paygate_server.config import Settings
from paygate_server.extensions import Extension
from paygate_server.webhooks import endpoints
from paygate_server.webhooks.dispatcher import Dispatcher
from paygate_server.webhooks.events import WebhookConsumer
from paygate_server.webhooks.retention import prune_forever

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["WebhooksExtension", "consumer_for", "extension"]


def consumer_for(settings: Settings, dispatcher: Dispatcher) -> WebhookConsumer:
    """The relay's webhook consumer, waking ``dispatcher`` when it creates events (the
    extension's and the simulation's)."""
    return WebhookConsumer(batch_size=settings.relay_batch_size, on_created=dispatcher.wake,
                           retention_s=settings.webhook_retention_s)


class WebhooksExtension(Extension):
    name = "webhooks"
    requires = ("relay",)  # events come only from its consumer: without it none would ever fire
    provides = ("webhook_dispatcher",)
    routes = endpoints.routes

    async def setup(self, gateway: Gateway) -> None:
        dispatcher = Dispatcher(gateway.db, gateway.master_key, gateway.settings)
        gateway.webhook_dispatcher = dispatcher
        gateway.relay.add(consumer_for(gateway.settings, dispatcher))

    def background_tasks(self, gateway: Gateway) -> list[Coroutine[Any, Any, None]]:
        return [gateway.webhook_dispatcher.run_forever(), prune_forever(gateway.db, gateway.settings)]

    async def teardown(self, gateway: Gateway) -> None:
        if gateway.has("webhook_dispatcher"):  # teardown runs even after a failed setup
            await gateway.webhook_dispatcher.close()


extension = WebhooksExtension()
