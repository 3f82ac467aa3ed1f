"""Tables of the change history's consumers: relay offsets, archive segments, webhooks (SPEC §6, §8)."""
from __future__ import annotations

from paygate_server.db.schema import metadata

__all__: list[str] = []

_ = metadata
