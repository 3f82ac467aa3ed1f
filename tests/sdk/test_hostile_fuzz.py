"""Hypothesis against the SDK's two surfaces that read what others send:

- ``paygate.webhooks.verify`` / ``construct_event`` with hostile signatures, ids,
  timestamps and bodies, and correctly signed bodies of any JSON: the answer is the payload
  (an ``Event``) or ``SignatureVerificationError``, never another exception;
- the sync client against a real hostile server (tests/sdk/hostile_server, over a socket):
  any status, content type, body (non-JSON, HTML error pages, truncated JSON, arrays, error
  objects without ``code``, huge), with and without ``X-Request-Id``: the result of a 2xx
  the SDK can read, else one of the documented ``PaygateError`` classes carrying the status
  and the request id where there is one — never ``KeyError``, ``TypeError``,
  ``JSONDecodeError`` and the like.

A few examples in the default suite; many with ``-m slow``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paygate
from paygate import webhooks
from tests.support.hostile import json_values, text_values
from tests.support.slow_set import is_slow_run

from .conftest import API_KEY, SIGNING_SECRET, intent_json
from .hostile_server import HostileServer, Raw, Seen, answer

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
_SETTINGS: dict[str, Any] = {"deadline": None, "database": None,
                             "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


def _examples(request: pytest.FixtureRequest, default: int) -> int:
    slow = is_slow_run(request.config, {m.name for m in request.node.iter_markers()})
    return 500 if slow else default


# -- webhooks ----------------------------------------------------------------------------------------

header_texts = st.one_of(text_values, st.sampled_from(["", " ", "1_700_000_000", "١٧٠٠٠٠٠٠٠٠", "9" * 5000, "-1",
                                                       "1e9", "0x10", "v1,", "v1,%%%", "v2,abc", "v1," + "A" * 100000]))
payloads = st.one_of(st.binary(max_size=200), st.builds(lambda v: json.dumps(v, allow_nan=True).encode(), json_values),
                     text_values, st.sampled_from([b'{"type": 5, "data": [], "timestamp": {}}',
                                                   b'{"data": {"x": 1}, "eventId": [], "createdAt": "yesterday"}',
                                                   b'{"timestamp": "9999-99-99T99:99:99Z", "type": null}',
                                                   b'{"timestamp": 1e400}', b"[" * 50000, b'{"a": NaN}']))


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bytes | str, dict[str, str], bool]:
    """A payload and headers; whether they are signed right (by the SDK's own ``sign``)."""
    payload = draw(payloads)
    msg_id = draw(st.sampled_from(["msg_1", "evt_" + "x" * 26]) | text_values)
    now = int(time.time())
    timestamp = draw(st.sampled_from([now, now - 10, now + 10]) | st.integers(-(2**70), 2**70))
    headers: dict[str, str] = {}
    signed = False
    try:
        signature = webhooks.sign(payload, SECRET, msg_id=msg_id, timestamp=timestamp)
        signed = True
    except (UnicodeEncodeError, ValueError, OverflowError):
        signature = "v1," + base64.b64encode(b"x" * 32).decode()
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    for name in draw(st.lists(st.sampled_from(list(headers)), max_size=3, unique=True)):
        mangle = draw(st.integers(0, 2))
        if mangle == 0:
            del headers[name]
        else:
            headers[name] = draw(header_texts)
        signed = False
    if draw(st.booleans()):
        headers = {draw(st.sampled_from([k, k.upper(), k.title()])): v for k, v in headers.items()}
    return payload, headers, signed


@pytest.mark.slow  # many more examples with -m slow
def test_webhook_verification_raises_only_its_error(request: pytest.FixtureRequest) -> None:
    @settings(max_examples=_examples(request, 200), **_SETTINGS)
    @given(delivery=deliveries(), tolerance=st.sampled_from([300, 0, 10**9]))
    def fuzz(delivery: tuple[bytes | str, dict[str, str], bool], tolerance: int) -> None:
        payload, headers, signed = delivery
        for check in (webhooks.verify, webhooks.construct_event):
            try:
                result = check(payload, headers, SECRET, tolerance)
            except paygate.SignatureVerificationError as error:
                assert "\n" not in str(error)
                continue
            assert signed or headers_still_sign(payload, headers), headers  # nothing unsigned passes
            if check is webhooks.construct_event:
                assert isinstance(result, paygate.Event) and isinstance(result.data, dict)
            else:
                assert isinstance(result, dict)

    fuzz()


def headers_still_sign(payload: bytes | str, headers: dict[str, str]) -> bool:
    """Whether mangled headers happen to sign the payload still (a mangling that kept a value)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        expected = webhooks.sign(payload, SECRET, msg_id=lowered["webhook-id"],
                                 timestamp=int(lowered["webhook-timestamp"]))
    except (KeyError, ValueError, UnicodeEncodeError):
        return False
    return expected in lowered["webhook-signature"].split(" ")


# -- the client against a hostile server ------------------------------------------------------------

bodies = st.one_of(
    st.builds(lambda v: json.dumps(v, allow_nan=True).encode(), json_values),
    st.binary(max_size=100),
    st.sampled_from([
        b"", b"<html><body><h1>502 Bad Gateway</h1></body></html>", b'{"paymentIntentId": "pi_123", "amou',
        b"[]", b'[{"paymentIntentId": "pi_123"}]', b"null", b'"pi_123"', b'{"error": {}}', b'{"error": "boom"}',
        b'{"error": {"type": "api_error", "message": "no code"}}', b'{"error": {"code": 5, "requestId": []}}',
        b'{"error": {"code": "resource_missing", "requestId": "req_body", "message": "x\\nforged"}}',
        b'{"error": null}', b'{"data": {}}', b'{"data": [1, 2]}', b'{"data": [{"webhookEndpointId": 5}]}',
        b"x" * 3_000_000, b"[" * 100_000, b"1" * 5000,
    ]),
    st.builds(lambda extra: json.dumps(intent_json(**extra)).encode(),
              st.dictionaries(st.sampled_from(["amount", "status", "currency", "paymentIntentId", "lastError",
                                               "amountRefunded", "metadata", "createdAt", "clientSecret"]),
                              json_values, max_size=3)),
)
content_types = st.sampled_from(["application/json", "text/html", "text/plain; charset=bogus", "",
                                 "application/json; charset=utf-16", "application/problem+json"])
statuses = st.sampled_from([200, 200, 201, 204, 301, 400, 401, 403, 404, 409, 413, 422, 429, 431, 500, 502, 503, 504,
                            418, 299, 599])

CALLS: dict[str, Callable[[paygate.Client], Any]] = {
    "create": lambda c: c.payment_intents.create(amount=1999, currency="USD", product_details={"sku": "mug"}),
    "get": lambda c: c.payment_intents.get("pi_123"),
    "list": lambda c: c.payment_intents.list(limit=5),
    "cancel": lambda c: c.payment_intents.cancel("pi_123"),
    "status": lambda c: c.payment_intents.status("pi_123"),
    "history": lambda c: c.payment_intents.history("pi_123"),
    "refund": lambda c: c.refunds.create("pi_123", amount=500),
    "endpoints": lambda c: c.webhook_endpoints.list(),
}


class Script:
    """What the server answers next (set by each example)."""

    def __init__(self) -> None:
        self.raw = b""

    def __call__(self, seen: Seen) -> Raw:
        return Raw(self.raw, close=True)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[paygate.Client, Script]]:
    script = Script()
    with HostileServer(script) as server, \
            paygate.Client(API_KEY, SIGNING_SECRET, server.url, max_retries=0, timeout=10.0) as client:
        yield client, script


def _request_id_in(body: bytes) -> str | None:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError, RecursionError):
        return None
    value = error.get("requestId") if isinstance(error, dict) else None
    return value if isinstance(value, str) and value else None


@pytest.mark.slow  # many more examples with -m slow
def test_the_client_raises_only_its_errors_against_a_hostile_server(
        served: tuple[paygate.Client, Script], request: pytest.FixtureRequest) -> None:
    client, script = served

    @settings(max_examples=_examples(request, 60), **_SETTINGS)
    @given(call=st.sampled_from(sorted(CALLS)), status=statuses, body=bodies, content_type=content_types,
           request_id=st.sampled_from([None, "req_hostile", "req_" + "x" * 600]))
    def fuzz(call: str, status: int, body: bytes, content_type: str, request_id: str | None) -> None:
        raw = answer(status, body, content_type=content_type, request_id=request_id or "")
        if request_id is None:
            raw = raw.replace(b"X-Request-Id: \r\n", b"")
        script.raw = raw
        try:
            CALLS[call](client)
        except paygate.PaygateError as error:
            if isinstance(error, paygate.APIConnectionError):
                # The server closes once it has written: with the request still unread, the
                # kernel may reset the connection before the client reads the answer.
                assert error.http_status is None
                return
            assert error.http_status == status, (error.http_status, status)
            if request_id is not None and _request_id_in(body) is None:
                assert error.request_id == request_id, (error.request_id, request_id)
            for text in (error.message, error.code, error.param):  # from the body: one line, cut
                assert text is None or (isinstance(text, str) and "\n" not in text and len(text) <= 500), text
            return
        assert 200 <= status < 300, (call, status, body[:200])

    fuzz()
