"""``POST /processors/v1/{processorAccountId}/webhooks``: a processor's own notifications (SPEC §7)."""
from __future__ import annotations

from starlette.routing import Route

__all__ = ["routes"]

routes: list[Route] = []
