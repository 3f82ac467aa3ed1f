"""Payment intents: create, read, list, status (with long-poll and SSE), cancel, history."""
from __future__ import annotations

__all__: list[str] = []
