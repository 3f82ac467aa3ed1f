"""When to retry, and how long to wait first.

The decision is pure (a response or an exception in, a delay or ``None`` out) so the sync
and async clients share it, and the randomness lives in one injectable object so tests can
pin it.

=====================================================  =========  =====================
what happened                                          retried?   after retries run out
=====================================================  =========  =====================
connection error (DNS, refused, reset, protocol)       yes        APIConnectionError
timeout (connect, read, write, pool)                   yes        APITimeoutError
409 ``idempotency_request_in_progress``                yes        IdempotencyError
429 ``rate_limited``                                   yes [1]_   RateLimitError
5xx                                                    yes [1]_   APIError
409 ``intent_state_conflict``, any other 4xx           never      (mapped at once)
=====================================================  =========  =====================

.. [1] honouring ``Retry-After`` (seconds or an HTTP date), capped at 60 s.

The delay before retry *n* (0-based) is ``d = min(0.5 s × 2ⁿ, 5 s)`` with full-ish jitter
in ``[d/2, d]``, and never less than a (capped) ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import random as _random
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from . import _json

__all__ = ["Backoff", "is_retryable_response", "parse_retry_after"]

#: The 409 code that means "the first request with this key is still running".
IN_PROGRESS_CODE = "idempotency_request_in_progress"


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter.

    ``random`` returns a float in ``[0, 1)``; pass a seeded ``random.Random().random`` (or
    a constant) to make delays reproducible.
    """

    initial_delay: float = 0.5
    max_delay: float = 5.0
    max_retry_after: float = 60.0
    random: Callable[[], float] = field(default=_random.random, repr=False, compare=False)

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (0 for the first retry)."""
        # The exponent is bounded: float(2 ** 1024) overflows, and 2 ** 64 is past any cap.
        base = min(self.initial_delay * float(2 ** min(max(retry_number, 0), 64)), self.max_delay)
        # Jitter in [base/2, base]: spreads clients that failed together, never waits longer
        # than the cap.
        delay = base * (1.0 - 0.5 * self.random())
        if retry_after is not None:
            delay = max(delay, min(max(retry_after, 0.0), self.max_retry_after))
        return delay


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or ``None``."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max((when - now).total_seconds(), 0.0)


def error_code(response: httpx.Response) -> str | None:
    """``error.code`` of an error body that has been read, or ``None`` if there is none."""
    try:
        body = _json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            if isinstance(code, str):
                return code
    return None


def is_retryable_response(response: httpx.Response) -> bool:
    """Whether this answer may be retried (its body must have been read)."""
    status = response.status_code
    if status == 409:
        return error_code(response) == IN_PROGRESS_CODE
    return status == 429 or status >= 500


@contextlib.contextmanager
def tls_failures_as_connect_errors(request: httpx.Request) -> Iterator[None]:
    """A failed TLS handshake (an untrusted or expired certificate, a wrong host name) as
    ``httpx.ConnectError``, as httpx raises it from the sync client and, with httpcore 1.0.6
    or later, from the async one too. httpx admits any httpcore 1.x, and httpcore before 1.0.6
    let ``ssl.SSLError`` out of its async handshake unwrapped (httpcore #918): a merchant's
    ``except paygate.APIConnectionError`` would have missed it."""
    try:
        yield
    except ssl.SSLError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc


def is_retryable_exception(exc: BaseException) -> bool:
    """Transport failures are retried: the ``Idempotency-Key`` makes a POST safe to resend
    even when the first attempt may have reached the gateway."""
    # A bad URL scheme or a request httpx itself refuses to send fails the same way every
    # time: not worth retrying.
    return isinstance(exc, httpx.TransportError) and not isinstance(
        exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError
    )
