"""The card vault and its single-use tokens (SPEC §5).

``store`` keeps a decrypted card (from the checkout's JWE) and returns a token ``tok_…``
bound to the payment intent whose clientSecret made it. ``resolve_token`` turns the token
back into a card for ``POST /api/v1/payment/process`` — for that intent and merchant, before
it expires, if unused — without consuming it: the attempt that charges the card consumes
the token in its own transaction (the payment store's ``begin_attempt``, one conditional UPDATE, so two
concurrent redemptions cannot both win), after the request's Idempotency-Key was judged.
A refused request therefore never burns a token. The CVC is dropped as soon as the
authorization has an outcome — by the statements that record it (the payment store's ``settle_attempt``),
in the same transaction, whoever learns it — or when the token expires (``purge``),
whichever comes first.

What is encrypted, and how it is bound to its row: the card number and the CVC are two
AES-256-GCM ciphertexts under the row's own key (HKDF of the active data key and the
vault id, see :mod:`.datakeys`), with the row's identity — vault id, merchant, intent,
data-key version, and which field — as associated data. A ciphertext copied into another
row, or the CVC's into the number's column, does not decrypt.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.clock import now_us
from paygate_server.errors import ApiError
from paygate_server.ids import new_id
from paygate_server.intents.refusals import TOKEN_INVALID_MESSAGE
from paygate_server.processing.cards import ResolvedCard
from paygate_server.processing.connectors import CardDetails
from paygate_server.storage.schema_checkout import vault_cards
from paygate_server.storage.statements import Sql, fetch_one
from paygate_server.vault.datakeys import DataKeyStore, VaultDecryptError

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["TOKEN_INVALID_MESSAGE", "StoredCard", "VaultService", "hash_token"]

log = logging.getLogger("paygate.vault")

_TOKEN = re.compile(r"tok_[a-z0-9]{20,64}")
_USABLE = Sql(
    "SELECT id, merchant_id, intent_id, data_key_version, pan_sealed, cvc_sealed, fingerprint, brand, last4,"
    " exp_month, exp_year FROM vault_cards WHERE token_hash = :token_hash AND used_at IS NULL"
    " AND expires_at > :now AND intent_id = :intent_id AND merchant_id = :merchant_id"
)
_US = 1_000_000


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _aad(field: str, vault_id: str, merchant_id: str, intent_id: str, version: int) -> bytes:
    return "\x00".join(("paygate/vault/v1", field, vault_id, merchant_id, intent_id, str(version))).encode()


@dataclass(frozen=True, slots=True)
class StoredCard:
    token: str
    vault_id: str
    summary: dict[str, Any]
    expires_at: int

    def __repr__(self) -> str:  # the token is a bearer credential (with the API key)
        return f"StoredCard(vault_id={self.vault_id!r}, summary={self.summary!r})"


class VaultService:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.keys = DataKeyStore(gateway.db, gateway.master_key)

    async def start(self) -> None:
        await self.keys.ensure_active_key()

    def seal_card(self, card: ResolvedCard, *, vault_id: str, merchant_id: str,
                  intent_id: str) -> dict[str, Any]:
        """The encrypted columns of a new vault row (no I/O)."""
        version = self.keys.active_version
        ids = (vault_id, merchant_id, intent_id, version)
        return {
            "data_key_version": version,
            "pan_sealed": self.keys.encrypt(version, vault_id, card.details.number.encode("ascii"), _aad("pan", *ids)),
            "cvc_sealed": self.keys.encrypt(version, vault_id, card.details.cvc.encode("ascii"), _aad("cvc", *ids)),  # type: ignore[union-attr]  # vaulted cards come from the checkout JWE, which requires a CVC (cards/jwe.py)
        }

    async def store(self, conn: AsyncConnection, card: ResolvedCard, *, merchant_id: str,
                    intent_id: str) -> StoredCard:
        """Insert a vault row for ``card`` inside the caller's transaction; its token."""
        if card.fingerprint is None:
            raise ValueError("a vaulted card needs its fingerprint")
        vault_id = new_id("vlt")
        token = new_id("tok", 20)
        now = now_us()
        expires_at = now + int(self._gateway.settings.token_ttl_s * _US)
        summary = card.summary
        await conn.execute(insert(vault_cards).values(
            id=vault_id, token_hash=hash_token(token), merchant_id=merchant_id, intent_id=intent_id,
            **self.seal_card(card, vault_id=vault_id, merchant_id=merchant_id, intent_id=intent_id),
            fingerprint=card.fingerprint, brand=summary["brand"], last4=summary["last4"],
            exp_month=summary["expMonth"], exp_year=summary["expYear"],
            created_at=now, expires_at=expires_at, used_at=None,
        ))
        return StoredCard(token, vault_id, dict(summary), expires_at)

    async def resolve_token(self, token: Any, *, merchant_id: str, intent_id: str) -> ResolvedCard:
        """The card behind ``token``, not consuming it (its attempt does, see the module's
        docstring): ``400 token_invalid`` unless the token is unused, unexpired, and was
        made for this intent of this merchant."""
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise ApiError("token_invalid", TOKEN_INVALID_MESSAGE, param="token")
        async with self._gateway.db.read_one() as conn:
            row = await fetch_one(conn, _USABLE, token_hash=hash_token(token), now=now_us(),
                                  intent_id=intent_id, merchant_id=merchant_id)
        if row is None:
            raise ApiError("token_invalid", TOKEN_INVALID_MESSAGE, param="token")
        return await self._resolve(row)

    async def redeem(self, token: Any, *, merchant_id: str, intent_id: str) -> ResolvedCard:
        """The card behind ``token``, consuming it on its own (outside a payment attempt)."""
        card = await self.resolve_token(token, merchant_id=merchant_id, intent_id=intent_id)
        assert card.vault_id is not None
        if not await self._gateway.payments.redeem_token(card.vault_id):
            raise ApiError("token_invalid", TOKEN_INVALID_MESSAGE, param="token")
        return card

    async def _resolve(self, row: Any) -> ResolvedCard:
        vault_id, version = row["id"], row["data_key_version"]
        ids = (vault_id, row["merchant_id"], row["intent_id"], version)
        try:
            number = (await self.keys.decrypt(version, vault_id, bytes(row["pan_sealed"]),
                                              _aad("pan", *ids))).decode("ascii")
            cvc = "" if row["cvc_sealed"] is None else (await self.keys.decrypt(
                version, vault_id, bytes(row["cvc_sealed"]), _aad("cvc", *ids))).decode("ascii")
        except VaultDecryptError:
            # An operator problem (lost data key, tampered row), not the client's: no detail
            # reaches the client, the vault id reaches the log.
            log.error("vault row %s does not decrypt", vault_id)
            raise ApiError("internal_error", "an internal error occurred") from None
        summary = {"brand": row["brand"], "last4": row["last4"],
                   "expMonth": row["exp_month"], "expYear": row["exp_year"]}
        return ResolvedCard(
            details=CardDetails(number, row["exp_month"], row["exp_year"], cvc),
            summary=summary, fingerprint=row["fingerprint"], vault_id=vault_id,
        )

    async def purge(self) -> tuple[int, int]:
        """Expired tokens: drop their CVCs, and the whole row of a token never used (its
        card was never charged, so nothing needs it). (CVCs dropped, rows deleted)."""
        now = now_us()
        async with self._gateway.db.write() as conn:
            deleted = await conn.execute(delete(vault_cards).where(
                vault_cards.c.expires_at <= now, vault_cards.c.used_at.is_(None)))
            dropped = await conn.execute(update(vault_cards).where(
                vault_cards.c.expires_at <= now, vault_cards.c.cvc_sealed.is_not(None),
            ).values(cvc_sealed=None))
        return dropped.rowcount or 0, deleted.rowcount or 0
