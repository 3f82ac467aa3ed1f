"""Webhook signatures (SPEC §6, Standard Webhooks 1.0).

A delivery carries three headers:

- ``webhook-id``: the event id, the same on every retry (deduplicate on it);
- ``webhook-timestamp``: Unix seconds of this attempt;
- ``webhook-signature``: space-separated ``v1,<base64>`` entries (several during a
  secret rotation), each the HMAC-SHA256 of ``"<id>.<timestamp>.<raw body>"`` keyed with
  the base64-decoded part of the ``whsec_…`` secret.

Verify the raw body bytes as received: parsing and re-serializing JSON changes them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import _json
from ._exceptions import SignatureVerificationError
from ._models import Event

__all__ = ["DEFAULT_TOLERANCE", "construct_event", "sign", "sign_headers", "verify"]

#: Seconds a timestamp may be off the receiver's clock, in either direction.
DEFAULT_TOLERANCE = 300
_SECRET_PREFIX = "whsec_"


def _key(secret: str) -> bytes:
    if not isinstance(secret, str):
        # None (a missing environment variable) was an AttributeError from removeprefix.
        raise TypeError(f"the webhook secret must be a str (whsec_…), not {type(secret).__name__}")
    encoded = secret.removeprefix(_SECRET_PREFIX)
    try:
        # Unpadded base64 is accepted too, as other Standard Webhooks libraries do.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook secret is not valid base64 after 'whsec_'") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def _text_bytes(text: str) -> bytes:
    # surrogateescape: a framework that decodes headers or bodies as UTF-8 that way
    # (aiohttp) hands invalid bytes over as lone surrogates; this gives the bytes back, so
    # what was signed is what is checked. A str that cannot be bytes at all raises
    # UnicodeEncodeError, which verify() reports as a failed verification.
    return text.encode("utf-8", "surrogateescape")


def _body(payload: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(payload, str):
        return _text_bytes(payload)
    # Bytes-like only: bytes() would also turn an int into that many NUL bytes, or a list of
    # ints into bytes, and sign or verify those instead of failing.
    if isinstance(payload, bytes | bytearray) or (
        isinstance(payload, memoryview) and payload.itemsize == 1
    ):
        return bytes(payload)
    raise TypeError(f"the payload must be bytes or str, not {type(payload).__name__}")


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    message = _text_bytes(msg_id) + f".{timestamp}.".encode() + body
    return hmac.new(key, message, hashlib.sha256).digest()


def sign(payload: bytes | str, secret: str, *, msg_id: str, timestamp: int | datetime) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) of one delivery."""
    ts = int(timestamp.timestamp()) if isinstance(timestamp, datetime) else int(timestamp)
    digest = _digest(_key(secret), msg_id, ts, _body(payload))
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_headers(
    payload: bytes | str,
    secret: str,
    *,
    msg_id: str,
    timestamp: int | datetime | None = None,
) -> dict[str, str]:
    """All three headers of one delivery (``timestamp`` defaults to now): for tests and
    for tools that replay events to a receiver."""
    ts = int(time.time()) if timestamp is None else timestamp
    ts = int(ts.timestamp()) if isinstance(ts, datetime) else int(ts)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(payload, secret, msg_id=msg_id, timestamp=ts),
    }


_SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers by lower-case name. A mapping that lists a name twice (Starlette's and
    Werkzeug's ``Headers`` do, for a header sent twice) must not repeat a signed one:
    ``headers["webhook-id"]`` there is the first value and a dict keeps the last, so the
    id the receiver deduplicates on could differ from the id that was verified."""
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = str(name).lower()
        if key in lowered and key in _SIGNED_HEADERS:
            raise SignatureVerificationError(f"the {key} header is repeated")
        lowered[key] = value
    return lowered


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify a delivery and return its JSON payload.

    ``headers`` is any mapping (names are matched case-insensitively). Raises
    ``SignatureVerificationError`` if a header is missing or repeated, the timestamp is more than
    ``tolerance`` seconds in the past or the future, no ``v1`` signature matches (compared
    in constant time), or the verified body is not a JSON object. ``now`` (Unix seconds)
    replaces the clock, for tests. A ``tolerance`` that is negative or NaN is a
    ``ValueError`` (configuration, not the delivery).
    """
    if not tolerance >= 0:
        # NaN compares false both ways: it would accept any timestamp, replays included.
        raise ValueError("tolerance must be a number of seconds >= 0")
    key = _key(secret)
    lowered = _lower(headers)
    msg_id = lowered.get("webhook-id")
    raw_ts = lowered.get("webhook-timestamp")
    raw_signatures = lowered.get("webhook-signature")
    if not msg_id or not raw_ts or not raw_signatures:
        raise SignatureVerificationError(
            "missing webhook-id, webhook-timestamp or webhook-signature header"
        )
    try:
        timestamp = int(raw_ts.strip())
    except ValueError:
        raise SignatureVerificationError("invalid webhook-timestamp header") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise SignatureVerificationError("webhook timestamp too old")
    if timestamp > current + tolerance:
        raise SignatureVerificationError("webhook timestamp too far in the future")

    try:
        body = _body(payload)
        expected = _digest(key, msg_id, timestamp, body)
    except UnicodeEncodeError:
        # A webhook-id (or a str body) no bytes could have been: nothing was signed so.
        raise SignatureVerificationError("the webhook-id or payload is not text") from None
    # The base64 text is compared, not its decoded bytes, as standardwebhooks does: decoding
    # also took spellings of the digest that are not its encoding (unused low bits set).
    expected_text = base64.b64encode(expected)
    matched = False
    for entry in raw_signatures.split(" "):
        version, sep, encoded = entry.partition(",")
        if not sep or version != "v1":
            continue
        # surrogatepass: any str encodes (compare_digest refuses non-ASCII text).
        candidate = encoded.encode("utf-8", "surrogatepass")
        # No early exit: the time taken does not depend on which entry matched.
        matched |= hmac.compare_digest(candidate, expected_text)
    if not matched:
        raise SignatureVerificationError("no matching webhook signature")

    try:
        data = _json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SignatureVerificationError("the webhook payload is not JSON") from None
    if not isinstance(data, dict):
        raise SignatureVerificationError("the webhook payload is not a JSON object")
    return data


def construct_event(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> Event:
    """``verify()``, then an ``Event`` whose ``event_id`` is the ``webhook-id``."""
    data = verify(payload, headers, secret, tolerance, now=now)
    event = Event.from_dict(data)
    if event.event_id is None:
        event = dataclasses.replace(event, event_id=_lower(headers).get("webhook-id"))
    return event
