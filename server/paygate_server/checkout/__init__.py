"""The hosted checkout's server side (SPEC §5): its JWKS, the frame, tokens, status."""
from __future__ import annotations

__all__: list[str] = []
