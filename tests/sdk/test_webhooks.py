"""Webhook verification (SPEC §6, Standard Webhooks), checked against the third-party
``standardwebhooks`` library in both directions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

import paygate
from paygate import webhooks

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()
PAYLOAD = json.dumps(
    {
        "type": "payment_intent.succeeded",
        "timestamp": "2023-10-15T14:22:31Z",
        "data": {"paymentIntentId": "pi_123", "status": "succeeded", "amount": 1999},
    },
    separators=(",", ":"),
)
MSG_ID = "evt_2dGx8b3c"


def third_party_headers(
    payload: str = PAYLOAD, secret: str = SECRET, timestamp: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(MSG_ID, datetime.fromtimestamp(ts, tz=UTC), payload)
    return {"webhook-id": MSG_ID, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_verifies_what_standardwebhooks_signs() -> None:
    headers = third_party_headers()
    assert webhooks.verify(PAYLOAD, headers, SECRET) == json.loads(PAYLOAD)
    assert webhooks.verify(PAYLOAD.encode(), headers, SECRET)["type"] == "payment_intent.succeeded"


def test_standardwebhooks_verifies_what_we_sign() -> None:
    headers = webhooks.sign_headers(PAYLOAD, SECRET, msg_id=MSG_ID)
    assert Webhook(SECRET).verify(PAYLOAD, headers) == json.loads(PAYLOAD)
    assert headers["webhook-signature"] == Webhook(SECRET).sign(
        MSG_ID, datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC), PAYLOAD
    )


def test_header_names_are_case_insensitive() -> None:
    headers = {k.upper(): v for k, v in third_party_headers().items()}
    assert webhooks.verify(PAYLOAD, headers, SECRET)
    assert webhooks.verify(PAYLOAD, httpx.Headers(third_party_headers()), SECRET)


def test_tampered_body_is_rejected() -> None:
    headers = third_party_headers()
    with pytest.raises(paygate.SignatureVerificationError):
        webhooks.verify(PAYLOAD.replace("1999", "1"), headers, SECRET)
    with pytest.raises(paygate.SignatureVerificationError):
        webhooks.verify(PAYLOAD + " ", headers, SECRET)


def test_tampered_id_or_timestamp_is_rejected() -> None:
    headers = third_party_headers()
    with pytest.raises(paygate.SignatureVerificationError):
        webhooks.verify(PAYLOAD, {**headers, "webhook-id": "evt_other"}, SECRET)
    moved = str(int(headers["webhook-timestamp"]) - 1)
    with pytest.raises(paygate.SignatureVerificationError):
        webhooks.verify(PAYLOAD, {**headers, "webhook-timestamp": moved}, SECRET)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(paygate.SignatureVerificationError, match="signature"):
        webhooks.verify(PAYLOAD, third_party_headers(), OTHER_SECRET)


@pytest.mark.parametrize(
    "offset, ok",
    [
        (-301, False),
        (-299, True),
        (0, True),
        (299, True),
        (301, False),
        (-86400, False),
        (86400, False),
    ],
)
def test_timestamp_tolerance_in_both_directions(offset: int, ok: bool) -> None:
    now = 1_700_000_000
    headers = third_party_headers(timestamp=now + offset)
    if ok:
        assert webhooks.verify(PAYLOAD, headers, SECRET, now=now)
    else:
        with pytest.raises(paygate.SignatureVerificationError, match="timestamp"):
            webhooks.verify(PAYLOAD, headers, SECRET, now=now)


def test_custom_tolerance() -> None:
    now = 1_700_000_000
    headers = third_party_headers(timestamp=now - 60)
    with pytest.raises(paygate.SignatureVerificationError):
        webhooks.verify(PAYLOAD, headers, SECRET, tolerance=30, now=now)
    assert webhooks.verify(PAYLOAD, headers, SECRET, tolerance=90, now=now)


@pytest.mark.parametrize("tolerance", [float("nan"), -1])
def test_a_tolerance_that_is_nan_or_negative_is_refused(tolerance: float) -> None:
    # NaN (e.g. float() of a bad setting) made both timestamp checks false: a delivery
    # from 2001 verified, so did every replay.
    headers = third_party_headers(timestamp=1_000_000_000)
    with pytest.raises(ValueError, match="tolerance"):
        webhooks.verify(PAYLOAD, headers, SECRET, tolerance)  # type: ignore[arg-type]


def test_stale_and_future_with_the_real_clock() -> None:
    for offset in (-600, 600):
        with pytest.raises(paygate.SignatureVerificationError):
            webhooks.verify(
                PAYLOAD, third_party_headers(timestamp=int(time.time()) + offset), SECRET
            )


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_rejected(missing: str) -> None:
    headers = third_party_headers()
    del headers[missing]
    with pytest.raises(paygate.SignatureVerificationError, match="missing"):
        webhooks.verify(PAYLOAD, headers, SECRET)
    with pytest.raises(paygate.SignatureVerificationError):
        webhooks.verify(PAYLOAD, {**third_party_headers(), missing: ""}, SECRET)


def test_a_repeated_signed_header_is_rejected() -> None:
    # A captured delivery replayed with a fresh webhook-id in front of the real one: the
    # framework's headers["webhook-id"] (what a receiver deduplicates on) is the first,
    # so the delivery must not verify against the second.
    from starlette.datastructures import Headers

    headers = third_party_headers()
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        raw = [(b"webhook-id", b"evt_fresh")] if name == "webhook-id" else []
        raw += [(k.encode(), v.encode()) for k, v in headers.items()]
        if name != "webhook-id":
            raw.append((name.upper().encode(), headers[name].encode()))
        with pytest.raises(paygate.SignatureVerificationError, match="repeated"):
            webhooks.verify(PAYLOAD, Headers(raw=raw), SECRET)
        with pytest.raises(paygate.SignatureVerificationError, match="repeated"):
            webhooks.construct_event(PAYLOAD, Headers(raw=raw), SECRET)


@pytest.mark.parametrize("timestamp", ["soon", "1.5e9", ""])
def test_malformed_timestamp_is_rejected(timestamp: str) -> None:
    with pytest.raises(paygate.SignatureVerificationError):
        webhooks.verify(PAYLOAD, {**third_party_headers(), "webhook-timestamp": timestamp}, SECRET)


def test_one_of_several_signatures_is_enough() -> None:
    headers = third_party_headers()
    good = headers["webhook-signature"]
    stale_key = third_party_headers(
        secret=OTHER_SECRET, timestamp=int(headers["webhook-timestamp"])
    )
    rotated = " ".join(
        [stale_key["webhook-signature"], "v2,abcd", "garbage", "v1,!!notb64!!", good]
    )
    assert webhooks.verify(PAYLOAD, {**headers, "webhook-signature": rotated}, SECRET)
    only_bad = " ".join([stale_key["webhook-signature"], "v2," + good.split(",", 1)[1]])
    with pytest.raises(paygate.SignatureVerificationError):
        webhooks.verify(PAYLOAD, {**headers, "webhook-signature": only_bad}, SECRET)


def test_verified_but_not_a_json_object() -> None:
    for payload in ("[1,2]", "not json"):
        headers = third_party_headers(payload=payload)
        with pytest.raises(paygate.SignatureVerificationError, match="JSON"):
            webhooks.verify(payload, headers, SECRET)


def test_verified_payload_nested_too_deeply_is_a_verification_error() -> None:
    payload = "[" * 100_000
    headers = third_party_headers(payload=payload)
    with pytest.raises(paygate.SignatureVerificationError, match="JSON"):
        webhooks.verify(payload, headers, SECRET)


def test_secrets() -> None:
    raw = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    headers = third_party_headers()
    # Without the prefix, and unpadded, as other libraries accept.
    assert webhooks.verify(PAYLOAD, headers, raw)
    unpadded = "whsec_" + base64.b64encode(b"k" * 25).decode().rstrip("=")
    assert webhooks.verify(PAYLOAD, third_party_headers(secret=unpadded), unpadded)
    with pytest.raises(ValueError):
        webhooks.verify(PAYLOAD, headers, "whsec_not*base64")
    with pytest.raises(ValueError):
        webhooks.verify(PAYLOAD, headers, "whsec_")


@pytest.mark.parametrize("secret", [None, SECRET.encode(), 5])
def test_a_secret_that_is_not_text_is_a_type_error(secret: object) -> None:
    # Was AttributeError ('NoneType' object has no attribute 'removeprefix'): a secret read
    # with os.environ.get() and missing, or read from a file as bytes.
    headers = third_party_headers()
    with pytest.raises(TypeError, match="webhook secret"):
        webhooks.verify(PAYLOAD, headers, secret)  # type: ignore[arg-type]  # the misuse under test
    with pytest.raises(TypeError, match="webhook secret"):
        webhooks.sign(PAYLOAD, secret, msg_id=MSG_ID, timestamp=1)  # type: ignore[arg-type]  # the misuse under test


def test_construct_event() -> None:
    event = webhooks.construct_event(PAYLOAD, third_party_headers(), SECRET)
    assert isinstance(event, paygate.Event)
    assert event.type == "payment_intent.succeeded"
    assert event.id == MSG_ID  # the webhook-id: what receivers deduplicate on
    assert event.data["paymentIntentId"] == "pi_123"
    assert event.created_at == datetime(2023, 10, 15, 14, 22, 31, tzinfo=UTC)


def test_sign_accepts_datetimes() -> None:
    moment = datetime(2023, 10, 15, 14, 22, 31, tzinfo=UTC)
    assert webhooks.sign(PAYLOAD, SECRET, msg_id=MSG_ID, timestamp=moment) == webhooks.sign(
        PAYLOAD, SECRET, msg_id=MSG_ID, timestamp=int(moment.timestamp())
    )


def test_a_webhook_id_of_invalid_utf8_bytes_verifies_as_its_bytes() -> None:
    # aiohttp decodes headers as UTF-8 with surrogateescape: b"evt_\xff" arrives as
    # "evt_\udcff". Was: UnicodeEncodeError out of verify() (a 500 at the receiver).
    now = int(time.time())
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    raw_id = b"evt_\xff"
    digest = hmac.new(key, raw_id + f".{now}.".encode() + PAYLOAD.encode(), hashlib.sha256)
    headers = {
        "webhook-id": raw_id.decode("utf-8", "surrogateescape"),
        "webhook-timestamp": str(now),
        "webhook-signature": "v1," + base64.b64encode(digest.digest()).decode(),
    }
    assert webhooks.verify(PAYLOAD, headers, SECRET)["type"] == "payment_intent.succeeded"


def test_a_webhook_id_no_bytes_could_be_is_a_verification_error() -> None:
    headers = webhooks.sign_headers(PAYLOAD, SECRET, msg_id=MSG_ID)
    headers["webhook-id"] = "evt_\ud800"
    with pytest.raises(paygate.SignatureVerificationError):
        webhooks.verify(PAYLOAD, headers, SECRET)


@pytest.mark.parametrize("payload", [5, [123, 125], None, {"type": "x"}])
def test_a_payload_that_is_not_bytes_or_text_is_refused(payload: object) -> None:
    # Was: bytes(5) signed five NUL bytes, bytes([123, 125]) signed "{}".
    with pytest.raises(TypeError, match="payload"):
        webhooks.sign(payload, SECRET, msg_id=MSG_ID, timestamp=1)  # type: ignore[arg-type]  # the misuse under test
    with pytest.raises(TypeError, match="payload"):
        webhooks.verify(payload, webhooks.sign_headers(b"{}", SECRET, msg_id=MSG_ID), SECRET)  # type: ignore[arg-type]  # the misuse under test


def test_bytes_like_payloads_sign_as_their_bytes() -> None:
    signature = webhooks.sign(b"{}", SECRET, msg_id=MSG_ID, timestamp=1)
    for payload in (bytearray(b"{}"), memoryview(b"{}"), "{}"):
        assert webhooks.sign(payload, SECRET, msg_id=MSG_ID, timestamp=1) == signature  # type: ignore[arg-type]  # bytearray/memoryview: bytes-like


def _non_canonical(signature: str) -> str:
    """The same digest in base64 that is not the canonical encoding: the 32-byte digest's
    last character carries two unused bits, and setting one still decodes to the same bytes."""
    encoded = signature.removeprefix("v1,")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet[alphabet.index(encoded[-2]) ^ 1]
    altered = encoded[:-2] + last + "="
    assert altered != encoded and base64.b64decode(altered) == base64.b64decode(encoded)
    return "v1," + altered


def test_a_signature_in_non_canonical_base64_is_refused_as_standardwebhooks_does() -> None:
    # Was accepted: the entry was base64-decoded and the bytes compared, so one signature had
    # several spellings; standardwebhooks compares the "v1,<base64>" text and refuses them.
    headers = third_party_headers()
    headers["webhook-signature"] = _non_canonical(headers["webhook-signature"])
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(PAYLOAD, headers)
    with pytest.raises(paygate.SignatureVerificationError, match="signature"):
        webhooks.verify(PAYLOAD, headers, SECRET)
