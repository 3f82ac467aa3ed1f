"""Idempotency keys (SPEC §3): replay, reuse with another request, concurrency, scope."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from paygate_server.app import _housekeeping
from paygate_server.storage.schema import idempotency_keys
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as settings_for
from tests.support.clock import fake_clock
from tests.support.eventually import eventually

INTENT = "/api/v1/payment/intent"
BODY = {"amount": 1999, "currency": "USD", "productDetails": {"sku": "mug-01"}}


async def _count(shop) -> int:  # type: ignore[no-untyped-def]
    return len((await shop.get("/api/v1/payment/intents?limit=100")).json()["data"])


async def test_replay_returns_the_stored_response(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    first = await shop.post(INTENT, BODY, idempotency_key="order-1042")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = await shop.post(INTENT, BODY, idempotency_key="order-1042")  # fresh nonce and signature
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await _count(shop) == 1


async def test_same_key_different_request_is_422(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    await shop.post(INTENT, BODY, idempotency_key="k1")
    r = await shop.post(INTENT, {**BODY, "amount": 2000}, idempotency_key="k1")
    assert r.status_code == 422
    assert r.json()["error"] == {**r.json()["error"], "type": "idempotency_error", "code": "idempotency_key_reused"}
    r = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": "pi_x000000000000000"}, idempotency_key="k1")
    assert r.status_code == 422
    assert await _count(shop) == 1


async def test_keys_are_scoped_to_the_merchant(gw: InProcessGateway) -> None:
    a, b = await gw.new_merchant(), await gw.new_merchant()
    ra = await a.post(INTENT, BODY, idempotency_key="shared")
    rb = await b.post(INTENT, BODY, idempotency_key="shared")
    assert rb.status_code == 201 and "idempotent-replayed" not in rb.headers
    assert ra.json()["paymentIntentId"] != rb.json()["paymentIntentId"]


async def test_a_key_is_the_merchants_across_its_api_keys(gw: InProcessGateway) -> None:
    # SPEC §3 "Scope: the merchant": a retry signed with the merchant's other key (a rotation
    # between the two) is the same request.
    from paygate_server.merchants import create_key
    from tests.support.signing import Credentials, SignedClient

    shop = await gw.new_merchant()
    async with gw.gateway.db.write() as conn:
        second = await create_key(conn, gw.gateway.master_key, shop.creds.merchant_id)
    rotated = SignedClient(gw.http, Credentials(second.merchant_id, second.api_key, second.signing_secret))
    first = await shop.post(INTENT, BODY, idempotency_key="rotate-1")
    again = await rotated.post(INTENT, BODY, idempotency_key="rotate-1")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await _count(shop) == 1


async def test_rejected_requests_store_nothing(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    bad = await shop.post(INTENT, {**BODY, "amount": -1}, idempotency_key="k-val")
    assert bad.status_code == 400
    good = await shop.post(INTENT, BODY, idempotency_key="k-val")
    assert good.status_code == 201 and "idempotent-replayed" not in good.headers
    # A request that failed authentication stores nothing either.
    unauth = await shop.post(INTENT, BODY, idempotency_key="k-auth", secret="sk_test_" + "b" * 40)
    assert unauth.status_code == 401
    assert (await shop.post(INTENT, BODY, idempotency_key="k-auth")).status_code == 201


async def test_started_request_errors_are_replayed(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
    first = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid}, idempotency_key="c1")
    assert first.status_code == 409
    again = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid}, idempotency_key="c1")
    assert again.status_code == 409 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "caf\u00e9", "unit\x1fsep", "del\x7f"])
async def test_malformed_keys(gw: InProcessGateway, key: str) -> None:
    shop = await gw.new_merchant()
    r = await shop.post(INTENT, BODY, headers={"Idempotency-Key": key.encode("utf-8")})  # type: ignore[dict-item]
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "Idempotency-Key"


@pytest.mark.parametrize("key", ["k" * 255, "~", "a key with spaces", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"])
async def test_every_printable_ascii_key_of_1_to_255_is_taken(gw: InProcessGateway, key: str) -> None:
    # SPEC §3: 1–255 printable ASCII (0x20–0x7e); the refusals above are one past each end.
    # (Not a key that starts or ends with a space: HTTP strips those from a header's value.)
    shop = await gw.new_merchant()
    first = await shop.post(INTENT, BODY, idempotency_key=key)
    assert first.status_code == 201, first.text
    again = await shop.post(INTENT, BODY, idempotency_key=key)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()


async def test_concurrent_requests_with_one_key_execute_once(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    results = await asyncio.gather(*(shop.post(INTENT, BODY, idempotency_key="race") for _ in range(20)))
    statuses = {r.status_code for r in results}
    assert statuses <= {201, 409}
    created = {r.json()["paymentIntentId"] for r in results if r.status_code == 201}
    assert len(created) == 1
    assert sum("idempotent-replayed" not in r.headers for r in results if r.status_code == 201) == 1
    assert await _count(shop) == 1


async def test_keys_are_stored_only_as_digests(gw: InProcessGateway) -> None:
    # Keys are free text (random hex or UUIDs sometimes look like card numbers): they are
    # accepted, and only their SHA-256 is stored.
    from sqlalchemy import select

    from paygate_server.storage.schema import idempotency_keys

    shop = await gw.new_merchant()
    r = await shop.post(INTENT, BODY, idempotency_key="order-4242424242424242")
    assert r.status_code == 201
    again = await shop.post(INTENT, BODY, idempotency_key="order-4242424242424242")
    assert again.headers["idempotent-replayed"] == "true"
    async with gw.gateway.db.read() as conn:
        stored = (await conn.execute(select(idempotency_keys.c.idempotency_key)
                                     .where(idempotency_keys.c.merchant_id == shop.creds.merchant_id))).scalars().all()
    assert len(stored) == 1 and "4242" not in stored[0] and len(stored[0]) == 64


@pytest.fixture
async def lone_gw(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    """On a database of its own: the housekeeping below prunes every merchant's old keys."""
    async with running_gateway(settings_for(fresh_database_url, tmp_path)) as g:
        yield g


async def test_a_key_is_kept_24_hours_through_the_housekeeping(lone_gw: InProcessGateway) -> None:
    # SPEC §3: kept at least 24 h. Two keys 2 s apart; at 24 h + 1 s after the first, the
    # housekeeping (what the app runs once a minute) prunes the first and keeps the second,
    # which is still replayed: the prune and the replay read one TTL the same way.
    gw = lone_gw
    shop = await gw.new_merchant()

    async def stored_keys() -> int:
        async with gw.gateway.db.read() as conn:
            return int((await conn.execute(select(func.count()).select_from(idempotency_keys))).scalar_one())

    with fake_clock() as clock:
        assert (await shop.post(INTENT, BODY, idempotency_key="day-1")).status_code == 201
        clock.set_elapsed(2)
        second = await shop.post(INTENT, {**BODY, "amount": 2000}, idempotency_key="day-2")
        assert second.status_code == 201 and await stored_keys() == 2
        clock.set_elapsed(24 * 3600 + 1)
        housekeeping = asyncio.create_task(_housekeeping(gw.gateway))
        try:
            await eventually(stored_keys, until=lambda n: n == 1, what="the first key to be pruned")
        finally:
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
        again = await shop.post(INTENT, {**BODY, "amount": 2000}, idempotency_key="day-2")
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        assert again.json() == second.json()
