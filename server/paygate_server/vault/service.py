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
whichever comes first. The whole row (the encrypted number with it) goes when the token
expires, or later if its intent still has an operation pending or unknown then: nothing
reads a used token's card (``purge``, storage/vault.py).

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

from paygate_server.cards.resolved import ResolvedCard
from paygate_server.clock import now_us
from paygate_server.errors import ApiError
from paygate_server.ids import new_id
from paygate_server.intents.refusals import TOKEN_INVALID_MESSAGE, TOKEN_PARAM
from paygate_server.processing.connectors import CardDetails
from paygate_server.storage import vault as vault_store
from paygate_server.storage.statements import Connection
from paygate_server.storage.vault import SealedCard, VaultCard
from paygate_server.vault.datakeys import DataKeyStore, VaultDecryptError

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["TOKEN_INVALID_MESSAGE", "StoredCard", "VaultService", "hash_token"]

log = logging.getLogger("paygate.vault")

_TOKEN = re.compile(r"tok_[a-z0-9]{20,64}")
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
                  intent_id: str) -> SealedCard:
        """What a new vault row keeps of ``card``, the number and the CVC encrypted (no I/O)."""
        if card.fingerprint is None:
            raise ValueError("a vaulted card needs its fingerprint")
        version = self.keys.active_version
        ids = (vault_id, merchant_id, intent_id, version)
        summary = card.summary
        return SealedCard(
            data_key_version=version,
            pan_sealed=self.keys.encrypt(version, vault_id, card.details.number.encode("ascii"), _aad("pan", *ids)),
            cvc_sealed=self.keys.encrypt(version, vault_id, card.details.cvc.encode("ascii"), _aad("cvc", *ids)),  # type: ignore[union-attr]  # vaulted cards come from the checkout JWE, which requires a CVC (cards/jwe.py)
            fingerprint=card.fingerprint, brand=summary["brand"], last4=summary["last4"],
            exp_month=summary["expMonth"], exp_year=summary["expYear"],
        )

    async def store(self, conn: Connection, card: ResolvedCard, *, merchant_id: str,
                    intent_id: str) -> StoredCard:
        """Insert a vault row for ``card`` inside the caller's unit of work; its token."""
        stored, row, now = self._new_row(card, merchant_id, intent_id)
        await vault_store.insert_card(conn, row, token_hash=hash_token(stored.token), created_at=now,
                                      expires_at=stored.expires_at)
        return stored

    async def store_counted(self, card: ResolvedCard, *, merchant_id: str, intent_id: str,
                            limit: int) -> StoredCard | None:
        """The checkout's store: count one tokenization of the intent and insert its vault
        row, both or neither (one statement on PostgreSQL); None when the count is at
        ``limit`` (the card-testing limit, SPEC §5)."""
        stored, row, now = self._new_row(card, merchant_id, intent_id)
        if not await vault_store.insert_counted_card(self._gateway.db, row, token_hash=hash_token(stored.token),
                                                     created_at=now, expires_at=stored.expires_at, limit=limit):
            return None
        return stored

    def _new_row(self, card: ResolvedCard, merchant_id: str, intent_id: str) -> tuple[StoredCard, VaultCard, int]:
        vault_id = new_id("vlt")
        token = new_id("tok", 20)
        sealed = self.seal_card(card, vault_id=vault_id, merchant_id=merchant_id, intent_id=intent_id)
        now = now_us()
        expires_at = now + int(self._gateway.settings.token_ttl_s * _US)
        return (StoredCard(token, vault_id, dict(card.summary), expires_at),
                VaultCard(vault_id, merchant_id, intent_id, sealed), now)

    async def resolve_token(self, token: Any, *, merchant_id: str, intent_id: str) -> ResolvedCard:
        """The card behind ``token``, not consuming it (its attempt does, see the module's
        docstring): ``400 token_invalid`` unless the token is unused, unexpired, and was
        made for this intent of this merchant."""
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise ApiError("token_invalid", TOKEN_INVALID_MESSAGE, param=TOKEN_PARAM)
        row = await vault_store.usable_card(self._gateway.db, token_hash=hash_token(token), now=now_us(),
                                            intent_id=intent_id, merchant_id=merchant_id)
        if row is None:
            raise ApiError("token_invalid", TOKEN_INVALID_MESSAGE, param=TOKEN_PARAM)
        return await self._resolve(row)

    async def _resolve(self, row: VaultCard) -> ResolvedCard:
        vault_id, card = row.id, row.card
        version = card.data_key_version
        ids = (vault_id, row.merchant_id, row.intent_id, version)
        try:
            number = (await self.keys.decrypt(version, vault_id, card.pan_sealed, _aad("pan", *ids))).decode("ascii")
            cvc = "" if card.cvc_sealed is None else (await self.keys.decrypt(
                version, vault_id, card.cvc_sealed, _aad("cvc", *ids))).decode("ascii")
        except VaultDecryptError:
            # An operator problem (lost data key, tampered row), not the client's: no detail
            # reaches the client, the vault id reaches the log.
            log.error("vault row %s does not decrypt", vault_id)
            raise ApiError("internal_error", "an internal error occurred") from None
        summary = {"brand": card.brand, "last4": card.last4, "expMonth": card.exp_month, "expYear": card.exp_year}
        return ResolvedCard(details=CardDetails(number, card.exp_month, card.exp_year, cvc), summary=summary,
                            fingerprint=card.fingerprint, vault_id=vault_id)

    async def purge(self) -> vault_store.VaultPurge:
        """Expired tokens: delete the rows nothing can need any more — never used, or used
        by an intent with no operation pending or unknown — with the tokenization counts of
        their succeeded or canceled intents, and drop the CVCs of the rest
        (:func:`~paygate_server.storage.vault.purge_expired`)."""
        return await vault_store.purge_expired(self._gateway.db, now_us())
