"""A card ready for the processor, and how an ``encryptedCard`` JWE becomes one.

Shared by every way a card reaches ``process``: an encrypted card in the request (here),
a checkout token (the vault, which stores and resolves the same type).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from paygate_server import jsoncodec
from paygate_server.cards import InvalidCardData, decrypt_card_jwe, fingerprint
from paygate_server.errors import ApiError
from paygate_server.processing.connectors import CardDetails

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["FINGERPRINT_PURPOSE", "MAX_JWE_LENGTH", "ResolvedCard", "resolve_encrypted_card"]

MAX_JWE_LENGTH = 8 * 1024
FINGERPRINT_PURPOSE = "card-fingerprint"  # the master-key derivation of gateway.fingerprint_key


@dataclass(frozen=True, slots=True, repr=False)
class ResolvedCard:
    """A card ready for the processor: the details (in memory only) and what we keep."""

    details: CardDetails
    summary: dict[str, Any]
    fingerprint: str | None
    # The vault row the card came from: recording the attempt's outcome drops its CVC
    # (the store, in the outcome's own transaction).
    vault_id: str | None = None

    def __repr__(self) -> str:
        return f"ResolvedCard({self.summary!r})"


def _kid_of(jwe: str) -> str | None:
    try:
        header = jsoncodec.loads(base64.urlsafe_b64decode(jwe.split(".", 1)[0] + "=="))
        kid = header.get("kid") if isinstance(header, dict) else None
        return kid if isinstance(kid, str) else None
    except Exception:
        return None  # the decryption below gives the one generic error


async def resolve_encrypted_card(gateway: Gateway, jwe: Any, *, param: str = "encryptedCard") -> ResolvedCard:
    """Decrypt an ``encryptedCard`` JWE; every bad one gets the same error (no oracle)."""
    if not isinstance(jwe, str) or not 0 < len(jwe) <= MAX_JWE_LENGTH:
        raise ApiError("parameter_invalid", "encryptedCard could not be decrypted", param=param)
    keys = await gateway.card_keys.private_keys_for(_kid_of(jwe))
    try:
        payload = decrypt_card_jwe(jwe, keys, now=datetime.now(UTC))
    except InvalidCardData:
        raise ApiError("parameter_invalid", "encryptedCard could not be decrypted", param=param) from None
    return ResolvedCard(
        details=CardDetails(payload.number, payload.exp_month, payload.exp_year, payload.cvc),
        summary=payload.summary(),
        fingerprint=fingerprint(payload.number, gateway.fingerprint_key),
    )
