"""``POST /checkout/v1/tokens`` in-process: the happy path, every refusal in the SPEC §2
shape, the plaintext detector, and the card-testing limit under concurrency."""
from __future__ import annotations

import asyncio
import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from paygate_server.checkout.tokens import MAX_TOKENIZATIONS
from paygate_server.storage.checkout import tokenizations
from tests.server.checkout.helpers import VISA, encrypt, tokenize, vault_row
from tests.support.app import InProcessGateway

TOKENS = "/checkout/v1/tokens"


def assert_error(response: Any, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["requestId"] == response.headers["x-request-id"]
    assert error["requestId"].startswith("req_") and error["message"]
    if param is not None:
        assert error["param"] == param
    assert VISA not in response.text
    return error


async def _intent(gw: InProcessGateway, **kw: Any) -> tuple[Any, dict[str, Any]]:
    shop = await gw.new_merchant(**kw)
    return shop, await shop.create_intent()


async def test_tokenize(gw: InProcessGateway) -> None:
    shop, intent = await _intent(gw)
    r = await tokenize(gw, intent["clientSecret"], "5555555555554444", exp_month=7, exp_year=2031)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"token", "card"}
    assert re.fullmatch(r"tok_[a-z0-9]{32}", body["token"])
    assert body["card"] == {"brand": "mastercard", "last4": "4444", "expMonth": 7, "expYear": 2031}
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-request-id"].startswith("req_")
    assert "set-cookie" not in r.headers
    row = await vault_row(gw, intent_id=intent["paymentIntentId"])
    assert row.merchant_id == shop.creds.merchant_id and row.last4 == "4444"


async def test_errors_have_the_spec_shape(gw: InProcessGateway) -> None:
    _, intent = await _intent(gw)
    secret = intent["clientSecret"]
    jwe = encrypt(gw)
    post = gw.http.post
    assert_error(await post(TOKENS, content=b"{nope"), 400, "invalid_json")
    assert_error(await post(TOKENS, content=b"[1]"), 400, "invalid_json")
    assert_error(await post(TOKENS, content=b""), 400, "invalid_json")
    assert_error(await post(TOKENS, json={"encryptedCard": jwe}), 400, "parameter_missing", "clientSecret")
    assert_error(await post(TOKENS, json={"clientSecret": secret}), 400, "parameter_missing", "encryptedCard")
    assert_error(await post(TOKENS, json={"clientSecret": secret, "encryptedCard": jwe, "x": 1}),
                 400, "parameter_invalid", "x")
    for unknown in ("pi_x_secret_y", secret[:-1] + ("a" if secret[-1] != "a" else "b"), 42, "a" * 300):
        assert_error(await post(TOKENS, json={"clientSecret": unknown, "encryptedCard": jwe}),
                     404, "resource_missing", "clientSecret")
    big = {"clientSecret": secret, "encryptedCard": "x" * (64 * 1024)}
    assert_error(await post(TOKENS, json=big), 413, "body_too_large")
    r = await gw.http.get(TOKENS)
    assert r.status_code == 405


async def test_plaintext_card_numbers_are_refused_outside_encrypted_card(gw: InProcessGateway) -> None:
    _, intent = await _intent(gw)
    secret, jwe = intent["clientSecret"], encrypt(gw)
    for body in (
        {"clientSecret": secret, "encryptedCard": jwe, "number": "4242 4242 4242 4242"},
        {"clientSecret": "4242424242424242", "encryptedCard": jwe},
        {"clientSecret": secret, "encryptedCard": jwe, "card": {"n": 4242424242424242}},
    ):
        error = assert_error(await gw.http.post(TOKENS, json=body), 400, "plaintext_card_data")
        assert "4242" not in error["message"]
    # encryptedCard is exempt only when it holds a JWE compact string: a plaintext number
    # there is plaintext card data (issue #15.1); a JWE-shaped string is left to decryption,
    # with the one generic answer.
    error = assert_error(await gw.http.post(TOKENS, json={"clientSecret": secret, "encryptedCard": VISA}),
                         400, "plaintext_card_data")
    assert "4242" not in error["message"]
    error = assert_error(await gw.http.post(TOKENS, json={"clientSecret": secret, "encryptedCard": jwe[:-4] + ("AAAA" if not jwe.endswith("AAAA") else "BBBB")}),
                         400, "parameter_invalid", "encryptedCard")
    assert error["message"] == "Your card details could not be read. Please try again."


async def test_every_bad_jwe_gets_the_same_answer(gw: InProcessGateway) -> None:
    _, intent = await _intent(gw)
    secret, jwe = intent["clientSecret"], encrypt(gw)
    parts = jwe.split(".")

    def flip(part: str) -> str:
        raw = bytearray(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        raw[0] ^= 1
        return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()

    bad = [
        "", "garbage", ".".join(parts[:4]),
        ".".join([parts[0], flip(parts[1]), *parts[2:]]),   # key wrap
        ".".join([*parts[:3], flip(parts[3]), parts[4]]),   # ciphertext
        ".".join([*parts[:4], flip(parts[4])]),             # tag
        encrypt(gw, generation_time=datetime.now(UTC) - timedelta(hours=25)),  # too old
    ]
    answers = set()
    for value in bad:
        r = await gw.http.post(TOKENS, json={"clientSecret": secret, "encryptedCard": value})
        error = assert_error(r, 400, "parameter_invalid", "encryptedCard")
        answers.add((error["type"], error["message"]))
    assert len(answers) == 1


async def test_intent_must_be_payable(gw: InProcessGateway) -> None:
    shop, intent = await _intent(gw)
    r = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": intent["paymentIntentId"]})
    assert r.status_code == 200
    error = assert_error(await tokenize(gw, intent["clientSecret"]), 409, "intent_state_conflict")
    assert error["message"] == "This order has been canceled."


async def test_twenty_first_tokenization_is_rate_limited(gw: InProcessGateway) -> None:
    assert MAX_TOKENIZATIONS == 20  # SPEC §5's number, not only whatever the constant says
    _, intent = await _intent(gw)
    secret = intent["clientSecret"]
    jwe = encrypt(gw)
    # Failed decryptions count: probing with broken ciphertexts is card testing too.
    bad = await gw.http.post(TOKENS, json={"clientSecret": secret, "encryptedCard": "x.y.z.w.v"})
    assert bad.status_code == 400
    for _ in range(MAX_TOKENIZATIONS - 1):
        r = await gw.http.post(TOKENS, json={"clientSecret": secret, "encryptedCard": jwe})
        assert r.status_code == 200, r.text
    for body in ({"clientSecret": secret, "encryptedCard": jwe}, {"clientSecret": secret, "encryptedCard": "x"}):
        error = assert_error(await gw.http.post(TOKENS, json=body), 429, "rate_limited")
        assert error["type"] == "rate_limit_error"
    r = await gw.http.post(TOKENS, json={"clientSecret": secret, "encryptedCard": jwe})
    assert int(r.headers["retry-after"]) > 0
    # Another intent of the same merchant is not affected.
    _, other = await _intent(gw)
    assert (await tokenize(gw, other["clientSecret"])).status_code == 200


async def test_limit_holds_under_concurrency(gw: InProcessGateway) -> None:
    _, intent = await _intent(gw)
    secret, jwe = intent["clientSecret"], encrypt(gw)
    results = await asyncio.gather(*(
        gw.http.post(TOKENS, json={"clientSecret": secret, "encryptedCard": jwe}) for _ in range(35)))
    codes = sorted(r.status_code for r in results)
    assert codes == [200] * MAX_TOKENIZATIONS + [429] * (35 - MAX_TOKENIZATIONS), codes
    assert await tokenizations(gw.gateway.db, intent["paymentIntentId"]) == MAX_TOKENIZATIONS


@pytest.mark.parametrize("origin", ["http://localhost:5173"])
async def test_no_cors_on_tokens(gw: InProcessGateway, origin: str) -> None:
    """Only the frame (same origin as the gateway) may read the answer in a browser."""
    _, intent = await _intent(gw, origins=[origin])
    r = await gw.http.post(TOKENS, json={"clientSecret": intent["clientSecret"], "encryptedCard": encrypt(gw)},
                           headers={"Origin": origin})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
