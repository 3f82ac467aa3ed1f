"""Card data on the server: the checkout JWE, card numbers, the checkout keys.

- :mod:`.jwe` — :func:`decrypt_card_jwe` turns an ``encryptedCard`` (JWE compact,
  ``RSA-OAEP-256`` / ``A256GCM``, SPEC §5) into a :class:`CardPayload`, or raises
  :class:`InvalidCardData` — one exception, one message, whatever went wrong (no oracle).
  Map it to ``400 parameter_invalid`` with ``param="encryptedCard"``.
- :mod:`.pan` — Luhn, brand by BIN, and the SPEC §4 plaintext detector
  (:func:`contains_card_number` over a decoded request body; it skips a JWE only at the
  ciphertext paths the endpoint names).
- :mod:`.keys` — RSA key generation (``DEFAULT_KEY_BITS``, 2048-bit, the one default for
  every checkout key), the public JWKS for ``GET /checkout/v1/keys``, PKCS#8 DER
  (de)serialization for encrypted storage, and the keyed card-number :func:`fingerprint`.
- :mod:`.keystore` — the checkout keys stored sealed in the database (``sealed_keys``),
  rotation, and the per-process cache of decrypted keys.
- :mod:`.resolved` — :class:`ResolvedCard`, a card ready for the processor, and
  :func:`resolve_encrypted_card` (an ``encryptedCard`` through the keystore's keys).

Only :mod:`.keystore` (and :mod:`.resolved`, through it) does I/O (the database); the other modules do no storage, logging
or I/O, and neither is imported here, so ``import paygate_server.cards`` touches no
database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from paygate_server.lazy import lazy_exports

from .pan import (
    BRANDS,
    card_brand,
    contains_card_number,
    last4,
    looks_like_jwe_compact,
    luhn_valid,
)

if TYPE_CHECKING:
    from .jwe import INVALID_CARD_DATA_MESSAGE, CardPayload, InvalidCardData, decrypt_card_jwe
    from .keys import (
        DEFAULT_KEY_BITS,
        fingerprint,
        generate_private_key,
        new_kid,
        private_key_from_pkcs8_der,
        private_key_to_pkcs8_der,
        public_jwk,
        render_jwks,
    )

__all__ = ["BRANDS", "DEFAULT_KEY_BITS", "INVALID_CARD_DATA_MESSAGE", "CardPayload", "InvalidCardData",
           "card_brand", "contains_card_number", "decrypt_card_jwe", "fingerprint", "generate_private_key",
           "last4", "looks_like_jwe_compact", "luhn_valid", "new_kid",
           "private_key_from_pkcs8_der", "private_key_to_pkcs8_der", "public_jwk", "render_jwks"]

# The JWE and key helpers (the cryptography package, ~0.1 s to import) load on first use:
# the card-number helpers above are wanted without them, by the command line's refusals and
# by the processor simulator.
__getattr__ = lazy_exports(__name__, {
    **dict.fromkeys(("INVALID_CARD_DATA_MESSAGE", "CardPayload", "InvalidCardData", "decrypt_card_jwe"), ".jwe"),
    **dict.fromkeys(("DEFAULT_KEY_BITS", "fingerprint", "generate_private_key", "new_kid", "private_key_from_pkcs8_der",
                     "private_key_to_pkcs8_der", "public_jwk", "render_jwks"), ".keys"),
})
