"""Processing over real HTTP between real processes: every test card, exactly-once
charging under concurrency, refunds, the JWE boundary, and no card data anywhere."""
from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from jwcrypto import jwe as jw_jwe
from jwcrypto import jwk as jw_jwk

import paygate
from tests.e2e.conftest import Stack
from tests.support.signing import SignedClient

# card -> (final status, decline code or error code); SPEC §7.
CARDS = {
    "4242424242424242": ("succeeded", None),
    "5555555555554444": ("succeeded", None),
    "378282246310005": ("succeeded", None),
    "4000000000000002": ("failed", "generic_decline"),
    "4000000000009995": ("failed", "insufficient_funds"),
    "4000000000000069": ("failed", "expired_card"),
    "4000000000000127": ("failed", "incorrect_cvc"),
    "4000000000000119": ("failed", "processing_error"),
    "4000000000001018": ("succeeded", None),  # answer after the gateway's timeout
    "4000000000001026": ("succeeded", None),  # answer lost
    "4000000000001034": ("succeeded", None),  # 503 first, then approved on the same reference
    "4000000000001042": ("succeeded", None),  # approved after 1.5 s
}
CVC = "731"


def jwks(stack: Stack) -> dict[str, Any]:
    return httpx.get(f"{stack.gateway.base_url}/checkout/v1/keys").json()


def encrypted(stack: Stack, number: str, **kw: Any) -> str:
    cvc = "7314" if number.startswith("37") else CVC
    return paygate.encrypt_card(jwks(stack), number=number, exp_month=12, exp_year=2034, cvc=cvc, **kw)


async def process(shop: SignedClient, pid: str, jwe: str, **kw: Any) -> httpx.Response:
    return await shop.post("/api/v1/payment/process", {
        "paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": {"encryptedCard": jwe}}, **kw)


def test_every_test_card_ends_as_specified(stack: Stack) -> None:
    creds = stack.merchant()

    async def one(shop: SignedClient, number: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        intent = await shop.create_intent(amount=1000 + len(number))
        r = await process(shop, intent["paymentIntentId"], encrypted(stack, number), idempotency_key=f"p-{number}")
        assert r.status_code == 200, r.text
        assert r.json()["status"] in {"in_progress", "succeeded", "failed"}
        return number, r.json(), await shop.final_status(intent["paymentIntentId"])

    async def run() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=40) as http:
            shop = SignedClient(http, creds)
            return await asyncio.gather(*(one(shop, n) for n in CARDS))

    for number, answered, final in asyncio.run(run()):
        expected_status, code = CARDS[number]
        assert final["status"] == expected_status, (number, final)
        charges = stack.charges_at_processor(final["paymentIntentId"])
        approved = [c for c in charges if c["status"] == "approved"]
        if expected_status == "succeeded":
            assert len(approved) == 1, (number, charges)
            assert approved[0]["amount"] == final["amount"]
            assert final["lastError"] is None
        else:
            assert approved == [], (number, charges)
            error = final["lastError"]
            assert code in (error["declineCode"], error["code"]), (number, error)
            assert error["message"]
        if number == "4000000000001042":
            assert answered["status"] == "succeeded"  # within the wait budget
        if number in ("4000000000001018", "4000000000001026"):
            assert answered["status"] == "in_progress"  # settled later by the reconciler
        if number == "4000000000000002":
            assert answered["lastError"] == {"code": "card_declined", "declineCode": "generic_decline",
                                             "message": "The card was declined."}
        assert answered["card"]["last4"] == number[-4:]


def test_concurrent_process_calls_charge_once(stack: Stack) -> None:
    creds = stack.merchant()

    async def run() -> tuple[str, list[httpx.Response]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=60, limits=limits) as http:
            shop = SignedClient(http, creds)
            pid = (await shop.create_intent())["paymentIntentId"]
            jwe = encrypted(stack, "4242424242424242")
            results = await asyncio.gather(*(process(shop, pid, jwe, idempotency_key=f"k{i}") for i in range(200)))
            await shop.final_status(pid)
            return pid, results

    pid, results = asyncio.run(run())
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1, codes
    conflicts = [r for r in results if r.status_code == 409]
    assert len(conflicts) == 199
    assert {r.json()["error"]["code"] for r in conflicts} == {"intent_state_conflict"}
    charges = stack.charges_at_processor(pid)
    assert len(charges) == 1 and charges[0]["status"] == "approved"


def test_failed_intent_can_be_paid_with_another_card_and_succeeded_is_final(stack: Stack) -> None:
    creds = stack.merchant()

    async def run() -> None:
        async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as http:
            shop = SignedClient(http, creds)
            pid = (await shop.create_intent())["paymentIntentId"]
            first = await process(shop, pid, encrypted(stack, "4000000000009995"))
            assert first.json()["status"] == "failed"
            second = await process(shop, pid, encrypted(stack, "4242424242424242"), idempotency_key="pay-2")
            assert second.json()["status"] == "succeeded" and second.json()["lastError"] is None
            again = await process(shop, pid, encrypted(stack, "4242424242424242"))
            assert again.status_code == 409 and again.json()["error"]["code"] == "intent_state_conflict"
            replay = await process(shop, pid, encrypted(stack, "4242424242424242"), idempotency_key="pay-2")
            # A new JWE is a different body: the same key with another request is refused.
            assert replay.status_code == 422
            cancel = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
            assert cancel.status_code == 409
            attempts = {c["reference"] for c in stack.charges_at_processor(pid)}
            assert len(attempts) == 2  # a new card is a new attempt with a new reference

    asyncio.run(run())


def test_idempotent_process_replays_without_a_second_attempt(stack: Stack) -> None:
    creds = stack.merchant()

    async def run() -> None:
        async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as http:
            shop = SignedClient(http, creds)
            pid = (await shop.create_intent())["paymentIntentId"]
            jwe = encrypted(stack, "4242424242424242")
            first = await process(shop, pid, jwe, idempotency_key="once")
            second = await process(shop, pid, jwe, idempotency_key="once")
            assert second.headers["idempotent-replayed"] == "true" and second.json() == first.json()
            assert len(stack.charges_at_processor(pid)) == 1

    asyncio.run(run())


def test_concurrent_partial_refunds_never_exceed_the_charge(stack: Stack) -> None:
    creds = stack.merchant()

    async def run() -> None:
        async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=60,
                                     limits=httpx.Limits(max_connections=60)) as http:
            shop = SignedClient(http, creds)
            pid = (await shop.create_intent(amount=1000))["paymentIntentId"]
            assert (await process(shop, pid, encrypted(stack, "4242424242424242"))).json()["status"] == "succeeded"
            results = await asyncio.gather(*(shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 70})
                                             for _ in range(50)))
            ok = [r for r in results if r.status_code == 200]
            assert all(r.json()["status"] == "succeeded" for r in ok)
            refused = [r for r in results if r.status_code != 200]
            assert {r.status_code for r in refused} <= {400}
            assert len(ok) == 1000 // 70  # 14 fit; the rest are refused
            intent = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
            assert intent["amountRefunded"] == 70 * len(ok) <= 1000
            assert intent["status"] == "succeeded"  # refunds do not change the status
            # Full refund of the remainder by default, then nothing is left.
            rest = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "reason": "requested_by_customer"})
            assert rest.status_code == 200 and rest.json()["amount"] == 1000 - 70 * len(ok)
            none_left = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid})
            assert none_left.status_code == 400
            settled = httpx.get(f"{stack.simulator.base_url}/v1/settlements",
                                params={"date": datetime.now(UTC).date().isoformat()}).json()
            refunded_at_processor = sum(r["amount"] for r in settled["refunds"]
                                        if r["chargeReference"] in {c["reference"] for c in stack.charges_at_processor(pid)})
            assert refunded_at_processor == 1000

    asyncio.run(run())


def test_refund_and_process_refusals(stack: Stack) -> None:
    creds = stack.merchant()

    async def run() -> None:
        async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as http:
            shop = SignedClient(http, creds)
            pid = (await shop.create_intent())["paymentIntentId"]
            r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid})
            assert r.status_code == 409 and r.json()["error"]["code"] == "intent_state_conflict"
            for body, param in (({"paymentIntentId": pid, "paymentMethod": "bank", "paymentDetails": {"token": "tok_x"}}, "paymentMethod"),
                                ({"paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": {}}, "paymentDetails"),
                                ({"paymentIntentId": pid, "paymentMethod": "card"}, "paymentDetails"),
                                ({"paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": {"encryptedCard": 5}}, "paymentDetails.encryptedCard")):
                r = await shop.post("/api/v1/payment/process", body)
                assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
            r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                            "paymentDetails": {"number": "4242424242424242"}})
            assert r.json()["error"]["code"] == "plaintext_card_data"

    asyncio.run(run())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_jwe_boundary(stack: Stack) -> None:
    creds = stack.merchant()
    keys = jwks(stack)
    public = jw_jwk.JWK(**keys["keys"][0])
    now = datetime.now(UTC)

    def third_party(payload: dict[str, Any], alg: str = "RSA-OAEP-256", enc: str = "A256GCM", kid: str | None = None) -> str:
        token = jw_jwe.JWE(json.dumps(payload).encode(), protected=json.dumps(
            {"alg": alg, "enc": enc, "kid": kid or keys["keys"][0]["kid"]}))
        token.add_recipient(public)
        return token.serialize(compact=True)

    card = {"number": "4242424242424242", "expMonth": 12, "expYear": 2034, "cvc": "123", "name": "A B",
            "generationTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    good = third_party(card)
    parts = good.split(".")
    tampered = ".".join([*parts[:3], _b64(bytes([base64.urlsafe_b64decode(parts[3] + "==")[0] ^ 1]) + base64.urlsafe_b64decode(parts[3] + "==")[1:]), parts[4]])
    bad = {
        "tampered ciphertext": tampered,
        "wrong alg": third_party(card, alg="RSA-OAEP"),
        "wrong enc": third_party(card, enc="A128GCM"),
        "stale": third_party({**card, "generationTime": (now - timedelta(hours=25)).strftime("%Y-%m-%dT%H:%M:%SZ")}),
        "unknown kid": third_party(card, kid="kid-unknown"),
        "garbage": "a.b.c.d.e",
    }

    async def run() -> None:
        async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as http:
            shop = SignedClient(http, creds)
            errors = set()
            for name, token in bad.items():
                pid = (await shop.create_intent())["paymentIntentId"]
                r = await process(shop, pid, token)
                assert r.status_code == 400, (name, r.text)
                e = r.json()["error"]
                errors.add((e["code"], e["param"], e["message"]))
                assert (await shop.get(f"/api/v1/payment/intent/{pid}")).json()["status"] == "created"
            assert len(errors) == 1  # one error for every bad JWE: no oracle
            pid = (await shop.create_intent())["paymentIntentId"]
            r = await process(shop, pid, good)
            assert r.json()["status"] == "succeeded", r.text

    asyncio.run(run())


def test_no_card_data_in_logs_or_database(stack: Stack) -> None:
    # Runs after the tests above in this module (same stack): every test card went through.
    numbers = list(CARDS)
    texts = [stack.gateway.output(), stack.simulator.output()]
    for text in texts:
        for number in numbers:
            assert number not in text
        assert '"cvc"' not in text.lower()
    if stack.database_url.startswith("sqlite"):
        path = stack.database_url.removeprefix("sqlite:///")
        blobs = b"".join(open(p, "rb").read() for p in (path, path + "-wal") if __import__("os").path.exists(p))
    else:
        import asyncpg
        from sqlalchemy.engine import make_url

        async def dump() -> bytes:
            url = make_url(stack.database_url)
            conn = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database=url.database)
            try:
                out = []
                for (table,) in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"):
                    for row in await conn.fetch(f'SELECT * FROM "{table}"'):
                        out.append(repr(tuple(row)))
                return "\n".join(out).encode()
            finally:
                await conn.close()

        blobs = asyncio.run(dump())
    for number in numbers:
        assert number.encode() not in blobs
    assert b'"cvc"' not in blobs.lower()
    sim_db = (stack.data_dir / "simulator.db").read_bytes()
    for number in numbers:
        assert number.encode() not in sim_db
