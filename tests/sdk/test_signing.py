"""Request signing (SPEC §3), including the reference vector every implementation must
reproduce."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest

import paygate
from paygate import _signing

# SPEC §3 reference vector.
SECRET = "sk_test_3b003bab"
METHOD = "POST"
TARGET = "/api/v1/payment/intent"
TIMESTAMP = "2023-10-15T14:22:31Z"
NONCE = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
BODY = b'{"amount":1999,"currency":"USD"}'
BODY_SHA = "60826e43249d88800d99f99ba89fe0dcfa15a7e627924f001c0efb1fdbb7aafa"
SIGNATURE = "sha256=5115bba367b9f2e7a39b00e7bceeee47266fad4e0bf21e348a11bf85c7afcd46"


def test_reference_vector_body_hash() -> None:
    assert paygate.body_sha256(BODY) == BODY_SHA


def test_reference_vector_canonical_string() -> None:
    assert paygate.canonical_string(METHOD, TARGET, TIMESTAMP, NONCE, BODY) == (
        f"POST\n/api/v1/payment/intent\n2023-10-15T14:22:31Z\n{NONCE}\n{BODY_SHA}"
    )


def test_reference_vector_signature() -> None:
    assert paygate.compute_signature(SECRET, METHOD, TARGET, TIMESTAMP, NONCE, BODY) == SIGNATURE
    headers = paygate.sign_request(SECRET, METHOD, TARGET, BODY, timestamp=TIMESTAMP, nonce=NONCE)
    assert headers == {
        "X-Request-Timestamp": TIMESTAMP,
        "X-Request-Nonce": NONCE,
        "X-Signature": SIGNATURE,
    }


def test_reference_vector_independent_hmac() -> None:
    # The same value from the standard library alone: no shared code path to hide a bug.
    message = "\n".join([METHOD, TARGET, TIMESTAMP, NONCE, hashlib.sha256(BODY).hexdigest()])
    digest = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert "sha256=" + digest == SIGNATURE


def test_public_signing_module() -> None:
    from paygate import signing

    assert signing.canonical_string(METHOD, TARGET, TIMESTAMP, NONCE, BODY).endswith(BODY_SHA)
    assert signing.compute_signature(SECRET, METHOD, TARGET, TIMESTAMP, NONCE, BODY) == SIGNATURE
    assert len(signing.new_nonce()) == 36


def test_verify_signature() -> None:
    args = (SECRET, METHOD, TARGET, TIMESTAMP, NONCE)
    assert paygate.verify_signature(*args, BODY, SIGNATURE)
    assert not paygate.verify_signature(*args, BODY + b" ", SIGNATURE)
    assert not paygate.verify_signature(
        "sk_test_other", METHOD, TARGET, TIMESTAMP, NONCE, BODY, SIGNATURE
    )
    assert not paygate.verify_signature(*args, BODY, SIGNATURE.upper())
    assert not paygate.verify_signature(*args, BODY, "sha256=zz\u00e9")


def test_method_is_upper_cased_and_empty_body_hashes_empty_string() -> None:
    text = paygate.canonical_string("get", "/api/v1/payment/intents?limit=2", TIMESTAMP, NONCE, b"")
    lines = text.split("\n")
    assert lines[0] == "GET"
    assert lines[1] == "/api/v1/payment/intents?limit=2"
    assert lines[4] == hashlib.sha256(b"").hexdigest()
    assert not text.endswith("\n")


def test_every_part_is_signed() -> None:
    base = paygate.compute_signature(SECRET, METHOD, TARGET, TIMESTAMP, NONCE, BODY)
    variants = [
        ("PUT", TARGET, TIMESTAMP, NONCE, BODY),
        (METHOD, TARGET + "?a=1", TIMESTAMP, NONCE, BODY),
        (METHOD, TARGET, "2023-10-15T14:22:32Z", NONCE, BODY),
        (METHOD, TARGET, TIMESTAMP, NONCE[:-1] + "1", BODY),
        (METHOD, TARGET, TIMESTAMP, NONCE, BODY.replace(b"1999", b"1998")),
    ]
    for variant in variants:
        assert paygate.compute_signature(SECRET, *variant) != base


def test_newlines_cannot_forge_lines() -> None:
    with pytest.raises(ValueError):
        paygate.canonical_string(METHOD, TARGET + "\nx", TIMESTAMP, NONCE, BODY)


def test_format_timestamp() -> None:
    moment = datetime(2023, 10, 15, 14, 22, 31, 987654, tzinfo=UTC)
    assert paygate.format_timestamp(moment) == "2023-10-15T14:22:31Z"
    plus_two = moment.astimezone(timezone(timedelta(hours=2)))
    assert paygate.format_timestamp(plus_two) == "2023-10-15T14:22:31Z"
    assert paygate.format_timestamp(moment.replace(tzinfo=None)) == "2023-10-15T14:22:31Z"
    now = paygate.format_timestamp()
    parsed = datetime.strptime(now, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((parsed - datetime.now(UTC)).total_seconds()) < 5


def test_fresh_timestamp_and_nonce_each_call() -> None:
    first = paygate.sign_request(SECRET, "GET", "/api/v1/webhooks")
    second = paygate.sign_request(SECRET, "GET", "/api/v1/webhooks")
    assert first["X-Request-Nonce"] != second["X-Request-Nonce"]
    assert first["X-Signature"] != second["X-Signature"]
    assert _signing._NONCE_RE.match(first["X-Request-Nonce"])


@pytest.mark.parametrize("nonce", ["short", "x" * 65, "has space in it!!", "ünïcödé-nonce-1234"])
def test_invalid_nonces_are_refused(nonce: str) -> None:
    with pytest.raises(ValueError):
        paygate.sign_request(SECRET, METHOD, TARGET, BODY, nonce=nonce)
