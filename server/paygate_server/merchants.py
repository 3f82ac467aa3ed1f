"""Merchants, their allowed origins, and their API key pairs.

A key pair is the API key (``pk_…``, sent on every request) and its signing secret
(``sk_…``, never sent). The secret is needed to verify HMACs, so it is stored sealed under
the master key (AES-256-GCM, the API key as associated data) and shown once, at creation.

Input checks, key generation and sealing are here; the rows are read and written by
:mod:`paygate_server.storage.merchants` and :mod:`paygate_server.storage.api_keys`, on the
caller's unit of work (``conn``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from paygate_server.cards.pan import contains_card_number
from paygate_server.crypto import MasterKey
from paygate_server.ids import new_id, random_token
from paygate_server.storage import Transaction
from paygate_server.storage.api_keys import find_api_key, insert_api_key, revoke_api_key
from paygate_server.storage.merchants import (
    add_origins,
    get_merchant,
    insert_merchant,
    list_origins,
)

__all__ = ["KeyPair", "MerchantError", "StoredKey", "allow_origins", "create_merchant", "create_key",
           "revoke_key", "load_api_key", "get_merchant", "list_origins", "normalize_origin"]

SECRET_PURPOSE = "api-key-signing-secret"


class MerchantError(ValueError):
    """Bad input to a merchant or key operation (shown to the operator as is)."""


# The secrets stay out of repr (logs, tracebacks, debuggers).
@dataclass(frozen=True)
class KeyPair:
    merchant_id: str
    api_key: str
    signing_secret: str = field(repr=False)


@dataclass(frozen=True)
class StoredKey:
    api_key: str
    merchant_id: str
    secret: str = field(repr=False)
    revoked: bool


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` exactly, as browsers send it in ``Origin`` — and only an
    origin the checkout can honour: the frame's ``frame-ancestors`` and ``postMessage``
    target take what :func:`paygate_checkout.normalize_origin` makes of it (lower case,
    punycode, no default port). A wildcard, a host name with characters no browser writes
    in an origin (``*``, ``_``, a quote, a space, a trailing dot) or a port of 0 is refused
    here rather than stored, shown as allowed, and then left out of every frame's policy.
    A value holding credentials is not repeated in the refusal."""
    try:
        # An unclosed or non-IP bracketed host ("http://[::1") raises here, not a refusal below.
        parts = urlsplit(value.strip())
        has_userinfo = parts.username is not None or parts.password is not None
    except ValueError:
        raise MerchantError(f"origin must look like https://shop.example: {value!r}") from None
    if has_userinfo:
        raise MerchantError("an origin has no path, query or credentials (the value given holds credentials)")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise MerchantError(f"origin must look like https://shop.example: {value!r}")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise MerchantError(f"an origin has no path, query or credentials: {value!r}")
    # Here, not at the top: the checkout package brings Starlette and Jinja2, which the
    # commands that import this module (merchants, keys, webhooks) otherwise never load.
    from paygate_checkout import normalize_origin as browser_origin

    try:
        return browser_origin(value)
    except ValueError:
        raise MerchantError(f"origin must look like https://shop.example (a host name of letters, digits, "
                            f"hyphens and dots, no wildcard; a port from 1 to 65535): {value!r}") from None


def _new_key_pair(merchant_id: str, live: bool) -> KeyPair:
    mode = "live" if live else "test"
    return KeyPair(merchant_id, api_key=f"pk_{mode}_{random_token(20)}", signing_secret=f"sk_{mode}_{random_token(32)}")


async def _insert_key(conn: Transaction, master: MasterKey, pair: KeyPair) -> None:
    sealed = master.seal(SECRET_PURPOSE, pair.signing_secret.encode(), aad=pair.api_key.encode())
    await insert_api_key(conn, pair.api_key, pair.merchant_id, sealed)


async def create_merchant(conn: Transaction, master: MasterKey, *, name: str, origins: list[str],
                          live: bool = False) -> KeyPair:
    name = name.strip()
    if not name or len(name) > 200:
        raise MerchantError("a merchant name is 1 to 200 characters")
    if not name.isprintable():
        # A control character, or a byte of the command line that is not UTF-8 (a lone
        # surrogate, which PostgreSQL's driver cannot encode: that was a traceback).
        raise MerchantError("a merchant name has printable characters only (no control characters, "
                            "nothing that is not UTF-8)")
    if contains_card_number(name):
        # Shown on every console page that lists it and in the checkout frame (SPEC §5, §12:
        # never a card number); the console's form refused it already, the command line did not.
        raise MerchantError("a merchant name must not hold a card number")
    normalized = sorted({normalize_origin(o) for o in origins})
    merchant_id = new_id("mer")
    await insert_merchant(conn, merchant_id, name, normalized)
    pair = _new_key_pair(merchant_id, live)
    await _insert_key(conn, master, pair)
    return pair


async def allow_origins(conn: Transaction, merchant_id: str, origins: list[str]) -> None:
    """Add the origins the merchant does not allow yet (``origins`` as an operator wrote them)."""
    known = set(await list_origins(conn, merchant_id))
    await add_origins(conn, merchant_id, sorted({normalize_origin(o) for o in origins} - known))


async def create_key(conn: Transaction, master: MasterKey, merchant_id: str, *, live: bool = False) -> KeyPair:
    if await get_merchant(conn, merchant_id) is None:
        raise MerchantError(f"no merchant {merchant_id}")
    pair = _new_key_pair(merchant_id, live)
    await _insert_key(conn, master, pair)
    return pair


async def revoke_key(conn: Transaction, merchant_id: str, api_key: str) -> None:
    if not await revoke_api_key(conn, merchant_id, api_key):
        raise MerchantError(f"merchant {merchant_id} has no active key {api_key}")


async def load_api_key(conn: Transaction, master: MasterKey, api_key: str) -> StoredKey | None:
    found = await find_api_key(conn, api_key)
    if found is None:
        return None
    merchant_id, sealed, revoked = found
    secret = master.open(SECRET_PURPOSE, sealed, aad=api_key.encode()).decode()
    return StoredKey(api_key=api_key, merchant_id=merchant_id, secret=secret, revoked=revoked)
