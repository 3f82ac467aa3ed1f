"""Storage of merchants and keys (SQLAlchemy Core)."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.clock import now_us
from paygate_server.crypto import MasterKey
from paygate_server.ids import new_id, random_token
from paygate_server.storage.schema import api_keys, merchant_origins, merchants

__all__ = [
    "KeyPair",
    "MerchantError",
    "StoredKey",
    "create_merchant",
    "create_key",
    "revoke_key",
    "load_api_key",
    "get_merchant",
    "list_origins",
    "normalize_origin",
]

SECRET_PURPOSE = "api-key-signing-secret"


class MerchantError(ValueError):
    """Bad input to a merchant or key operation (shown to the operator as is)."""


@dataclass(frozen=True)
class KeyPair:
    merchant_id: str
    api_key: str
    signing_secret: str

    def __repr__(self) -> str:
        return f"KeyPair(merchant_id={self.merchant_id!r}, api_key={self.api_key!r}, signing_secret=<redacted>)"


@dataclass(frozen=True)
class StoredKey:
    api_key: str
    merchant_id: str
    secret: str
    revoked: bool

    def __repr__(self) -> str:
        return f"StoredKey(api_key={self.api_key!r}, merchant_id={self.merchant_id!r}, secret=<redacted>)"


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` exactly, as browsers send it in ``Origin``."""
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise MerchantError(f"origin must look like https://shop.example: {value!r}")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
        raise MerchantError(f"an origin has no path, query or credentials: {value!r}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError as exc:
        raise MerchantError(f"bad port in origin {value!r}") from exc
    suffix = f":{port}" if port and port != default_port else ""
    return f"{parts.scheme}://{host}{suffix}"


def _new_key_pair(merchant_id: str, live: bool) -> KeyPair:
    mode = "live" if live else "test"
    return KeyPair(
        merchant_id=merchant_id,
        api_key=f"pk_{mode}_{random_token(20)}",
        signing_secret=f"sk_{mode}_{random_token(32)}",
    )


async def _insert_key(conn: AsyncConnection, master: MasterKey, pair: KeyPair) -> None:
    sealed = master.seal(SECRET_PURPOSE, pair.signing_secret.encode(), aad=pair.api_key.encode())
    await conn.execute(
        insert(api_keys).values(
            api_key=pair.api_key,
            merchant_id=pair.merchant_id,
            secret_sealed=sealed,
            created_at=now_us(),
        )
    )


async def create_merchant(
    conn: AsyncConnection, master: MasterKey, *, name: str, origins: list[str], live: bool = False
) -> KeyPair:
    name = name.strip()
    if not name or len(name) > 200:
        raise MerchantError("a merchant name is 1 to 200 characters")
    normalized = sorted({normalize_origin(o) for o in origins})
    merchant_id = new_id("mer")
    await conn.execute(insert(merchants).values(id=merchant_id, name=name, created_at=now_us()))
    if normalized:
        await conn.execute(
            insert(merchant_origins), [{"merchant_id": merchant_id, "origin": o} for o in normalized]
        )
    pair = _new_key_pair(merchant_id, live)
    await _insert_key(conn, master, pair)
    return pair


async def get_merchant(conn: AsyncConnection, merchant_id: str) -> dict[str, object] | None:
    row = (await conn.execute(select(merchants).where(merchants.c.id == merchant_id))).first()
    return dict(row._mapping) if row else None


async def list_origins(conn: AsyncConnection, merchant_id: str) -> list[str]:
    rows = await conn.execute(
        select(merchant_origins.c.origin).where(merchant_origins.c.merchant_id == merchant_id)
    )
    return sorted(r[0] for r in rows)


async def create_key(
    conn: AsyncConnection, master: MasterKey, merchant_id: str, *, live: bool = False
) -> KeyPair:
    if await get_merchant(conn, merchant_id) is None:
        raise MerchantError(f"no merchant {merchant_id}")
    pair = _new_key_pair(merchant_id, live)
    await _insert_key(conn, master, pair)
    return pair


async def revoke_key(conn: AsyncConnection, merchant_id: str, api_key: str) -> None:
    result = await conn.execute(
        update(api_keys)
        .where(api_keys.c.api_key == api_key, api_keys.c.merchant_id == merchant_id,
               api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now_us())
    )
    if result.rowcount != 1:
        raise MerchantError(f"merchant {merchant_id} has no active key {api_key}")


async def load_api_key(conn: AsyncConnection, master: MasterKey, api_key: str) -> StoredKey | None:
    row = (
        await conn.execute(
            select(api_keys.c.merchant_id, api_keys.c.secret_sealed, api_keys.c.revoked_at)
            .where(api_keys.c.api_key == api_key)
        )
    ).first()
    if row is None:
        return None
    secret = master.open(SECRET_PURPOSE, bytes(row.secret_sealed), aad=api_key.encode()).decode()
    return StoredKey(api_key=api_key, merchant_id=row.merchant_id, secret=secret,
                     revoked=row.revoked_at is not None)
