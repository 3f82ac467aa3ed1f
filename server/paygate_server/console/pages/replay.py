"""The console's replay of one failed webhook delivery, shared by a payment's page and a
merchant's page.

**Decision:** the console's replay never re-enables an endpoint. An endpoint disabled by a
``410`` (its server said it is gone) or deleted is refused, with what to do: once the
merchant has mended their receiver, an operator re-enables it on purpose with ``paygate
webhooks replay --endpoint we_…``, which sends its failed deliveries (those kept while it
was disabled included). Until this was decided, a support operator's replay of one
delivery re-enabled the endpoint as a side effect, unrecorded.
"""
from __future__ import annotations

from dataclasses import dataclass

from paygate_server.clock import now_us
from paygate_server.storage import Database
from paygate_server.storage.webhook_deliveries import DeliveryQueue

__all__ = ["ReplayOutcome", "replay_delivery"]


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    replayed: bool
    refusal: str | None = None  # why not, when the endpoint is the reason (else: not a failed delivery)


async def replay_delivery(db: Database, *, merchant_id: str, endpoint_id: str, event_id: str) -> ReplayOutcome:
    """The failed delivery of ``event_id`` to ``endpoint_id`` is due again now, if its endpoint
    is enabled; the endpoint itself is never changed."""
    queue = DeliveryQueue(db)
    if await queue.replay_failed(now_us(), merchant_id=merchant_id, endpoint_id=endpoint_id, event_id=event_id,
                                 enable_endpoints=False):
        return ReplayOutcome(True)
    state = await queue.endpoint_state(endpoint_id)
    if state is None or state[0] == "enabled":
        return ReplayOutcome(False)
    status, reason = state
    if status == "deleted":
        return ReplayOutcome(False, f"Not sent: endpoint {endpoint_id} was deleted, so nothing can be sent to it.")
    because = f" ({reason})" if reason else ""
    return ReplayOutcome(False, (
        f"Not sent: endpoint {endpoint_id} is disabled{because}, and a replay here never re-enables it. Once the "
        f"merchant has fixed their receiver, an operator re-enables it and sends its failed deliveries with "
        f"`paygate webhooks replay --endpoint {endpoint_id}`."))
