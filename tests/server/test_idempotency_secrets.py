"""Stored idempotent answers hold no readable secret (hardening #15.3): an intent's
clientSecret and a webhook endpoint's whsec_ secret are sealed in ``idempotency_keys``
on both databases, and a replay still answers the identical body."""
from __future__ import annotations

import base64
from typing import Any

import pytest

from paygate_server.http.api import IdempotencyScope
from paygate_server.storage.statements import Sql, execute, fetch_all
from tests.support.app import InProcessGateway

_ROWS = Sql("SELECT idempotency_key, request_hash, response_body FROM idempotency_keys WHERE merchant_id = :m")


def _encodings(secret: str) -> list[bytes]:
    raw = secret.encode()
    out = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for b64 in (base64.b64encode, base64.urlsafe_b64encode):
        out.append(b64(raw).rstrip(b"="))
    # The distinctive random part alone, too (in case the prefix is stored elsewhere).
    tail = raw.rsplit(b"_", 1)[-1]
    return out + [tail, tail.hex().encode(), base64.b64encode(tail).rstrip(b"=")]


async def _raw_rows(gw: InProcessGateway, merchant_id: str) -> list[bytes]:
    async with gw.gateway.db.read() as conn:
        rows = await fetch_all(conn, _ROWS, m=merchant_id)
    assert rows, "the answer was stored"
    return [b"|".join(str(r[c]).encode() if not isinstance(r[c], (bytes, memoryview)) else bytes(r[c])
                      for c in ("idempotency_key", "request_hash", "response_body")) for r in rows]


@pytest.mark.parametrize("path,body,field", [
    ("/api/v1/payment/intent", {"amount": 1999, "currency": "USD", "productDetails": {"sku": "mug-01"}}, "clientSecret"),
    # A public address literal: accepted without DNS; nothing is ever sent.
    ("/api/v1/webhooks", {"url": "http://93.184.216.34/hook"}, "secret"),
])
async def test_stored_answer_holds_no_readable_secret(gw: InProcessGateway, path: str, body: dict[str, Any],
                                                      field: str) -> None:
    shop = await gw.new_merchant()
    first = await shop.post(path, body, idempotency_key="secret-check")
    assert first.status_code == 201, first.text
    secret = first.json()[field]
    assert secret.startswith(("pi_", "whsec_"))
    for row in await _raw_rows(gw, shop.creds.merchant_id):
        for needle in _encodings(secret):
            assert needle not in row, f"{field} readable at rest"
    again = await shop.post(path, body, idempotency_key="secret-check")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content


async def test_a_sealed_answer_does_not_open_under_another_key(gw: InProcessGateway) -> None:
    """Sealed answers are bound to their row: copied under another key they are refused
    (500, no body leaked), not replayed."""
    shop = await gw.new_merchant()
    path, body = "/api/v1/payment/intent", {"amount": 500, "currency": "USD", "productDetails": {"sku": "m"}}
    first = await shop.post(path, body, idempotency_key="a")
    assert first.status_code == 201
    assert (await shop.post(path, body, idempotency_key="b")).status_code == 201
    move = Sql("UPDATE idempotency_keys SET response_body = (SELECT response_body FROM idempotency_keys"
               " WHERE merchant_id = :m AND idempotency_key = :a) WHERE merchant_id = :m AND idempotency_key = :b")
    digest = {k: IdempotencyScope(gw.gateway, shop.creds.merchant_id, k, "POST", path, b"").key for k in "ab"}
    async with gw.gateway.db.write() as conn:
        assert await execute(conn, move, m=shop.creds.merchant_id, a=digest["a"], b=digest["b"]) == 1
    r = await shop.post(path, body, idempotency_key="b")
    assert r.status_code == 500 and first.json()["clientSecret"] not in r.text
