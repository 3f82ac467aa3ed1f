"""Request signing (SPEC §3).

The signature is ``sha256=`` + lowercase hex HMAC-SHA256, keyed with the signing secret
(UTF-8), over the canonical string: five lines joined by ``\\n`` with no trailing newline::

    <METHOD upper case>
    <request target exactly as sent: path, plus "?" and the raw query string if any>
    <X-Request-Timestamp value>
    <X-Request-Nonce value>
    <lowercase hex SHA-256 of the raw body bytes (of b"" when there is no body)>

Everything here is pure (no I/O, no clock unless you leave ``timestamp`` out), so the
server and other tools can reuse it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from datetime import UTC, datetime

__all__ = [
    "body_sha256",
    "canonical_string",
    "compute_signature",
    "format_timestamp",
    "new_nonce",
    "sign_request",
    "verify_signature",
]

SIGNATURE_PREFIX = "sha256="
_NONCE_RE = re.compile(r"\A[A-Za-z0-9_-]{16,64}\Z")


def body_sha256(body: bytes) -> str:
    """Lowercase hex SHA-256 of the exact body bytes (``b""`` for no body)."""
    return hashlib.sha256(body).hexdigest()


def canonical_string(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> str:
    """The five-line string that is signed.

    ``target`` is the request target exactly as it goes on the wire: the path (with any
    base-URL prefix and percent-encoding) plus ``?`` and the raw query string, if any —
    no bare ``?`` for an empty query: the gateway cannot tell ``/path?`` from ``/path`` and
    verifies against ``/path``.
    """
    if "\n" in target or "\n" in timestamp or "\n" in nonce:
        raise ValueError("signed values must not contain newlines")
    return "\n".join((method.upper(), target, timestamp, nonce, body_sha256(body)))


def compute_signature(
    secret: str, method: str, target: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """The ``X-Signature`` value: ``sha256=<hex HMAC-SHA256(secret, canonical string)>``."""
    message = canonical_string(method, target, timestamp, nonce, body)
    digest = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def verify_signature(
    secret: str,
    method: str,
    target: str,
    timestamp: str,
    nonce: str,
    body: bytes,
    signature: str,
) -> bool:
    """Whether ``signature`` (an ``X-Signature`` value) signs this request; constant time.

    This checks the HMAC only: the timestamp window and nonce reuse are the verifier's.
    """
    expected = compute_signature(secret, method, target, timestamp, nonce, body)
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace"))


def format_timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 UTC, whole seconds, with ``Z`` (e.g. ``2023-10-15T14:22:31Z``).

    A naive ``datetime`` is taken to be UTC.
    """
    if moment is None:
        moment = datetime.now(UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_nonce() -> str:
    """A fresh nonce: a random UUID (36 characters of ``[0-9a-f-]``)."""
    return str(uuid.uuid4())


def sign_request(
    secret: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The three signing headers for one attempt of a request.

    Returns ``{"X-Request-Timestamp", "X-Request-Nonce", "X-Signature"}``; a fresh
    timestamp and nonce are made unless given. ``Authorization`` is not included (it is
    the API key, not a signature).
    """
    timestamp = format_timestamp() if timestamp is None else timestamp
    nonce = new_nonce() if nonce is None else nonce
    if not _NONCE_RE.match(nonce):
        raise ValueError("nonce must be 16-64 characters of [A-Za-z0-9_-]")
    return {
        "X-Request-Timestamp": timestamp,
        "X-Request-Nonce": nonce,
        "X-Signature": compute_signature(secret, method, target, timestamp, nonce, body),
    }
