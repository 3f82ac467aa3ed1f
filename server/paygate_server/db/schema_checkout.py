"""Tables of the hosted checkout: the card vault and its tokens (SPEC §5)."""
from __future__ import annotations

from paygate_server.db.schema import metadata

__all__: list[str] = []

_ = metadata
