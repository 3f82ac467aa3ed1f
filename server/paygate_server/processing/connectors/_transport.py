"""What every connector shares about the wire: its connection pool, and what a failure to
get an answer means (SPEC §7).

- no connection (``ConnectFailed``): not a byte of the request left, so nothing was done —
  ``FAILED`` for an operation (an account may fail over), ``UNKNOWN`` for a look-up (a
  look-up that did not happen says nothing);
- a timeout, a connection lost after sending, a malformed answer, any other transport
  error: ``UNKNOWN``. Messages name the exception's class only: its text could carry bytes
  of the request.

Text taken from a processor's answer (a message, a code) goes through
:func:`processor_text`: it is kept with the operation (``transactions.error_message``, the
change history and its archive, the reconciler's ``last_result``), and a processor may
quote the request back — a text that holds a card number is left out.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import SplitResult, urlsplit

from paygate_server import jsoncodec
from paygate_server.cards.pan import contains_card_number
from paygate_server.http1client import ConnectFailed, ConnectionPool, HttpTimeout, Transport

from .base import ChargeOutcome, ChargeResult

__all__ = ["KEEPALIVE_EXPIRY_S", "MAX_PROCESSOR_ID", "Answer", "PooledConnector", "connection_pool", "json_object",
           "keepable_id", "processor_text", "report_amount", "retry_after_s", "transport_failure"]

@dataclass(frozen=True, slots=True)
class Answer:
    """What one exchange with a processor means, as a connector's classifier decides it."""

    outcome: ChargeOutcome
    auth_code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    processor_id: str | None = None  # the processor's id of the payment, when it said it
    # The money the answer says moved, in the gateway's minor units (ChargeResult's): the
    # connector holds it to what it sent with other_money.
    amount: int | None = None
    currency: str | None = None
    retry_after_s: float | None = None  # RETRY only: the processor's Retry-After, in seconds

    def result(self, reference: str) -> ChargeResult:
        """This answer as the outcome of the operation sent under ``reference``."""
        return ChargeResult(reference, self.outcome, self.auth_code, self.decline_code, self.message,
                            self.processor_id, self.amount, self.currency, self.retry_after_s)


class PooledConnector:
    """The lifecycle every connector over :func:`connection_pool` shares."""

    _pool: Transport

    async def aclose(self) -> None:
        self._pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# Idle keep-alive connections older than this are replaced rather than reused.
KEEPALIVE_EXPIRY_S = 30.0


def connection_pool(base_url: str, what: str, setting: str, *, connect_timeout: float, read_timeout: float,
                    max_connections: int, transport: Transport | None) -> tuple[Transport, SplitResult]:
    """The pool of keep-alive connections to ``base_url`` (``transport``, the tests' seam,
    instead if given) and the URL's parts; ValueError naming the connector (``what``) and
    its ``setting`` unless it is ``http(s)://host…``.
    ``read_timeout`` also bounds the wait for a free pooled connection."""
    refused = ValueError(f"the {what} connector needs an http(s)://host[:port][/path] {setting}")
    try:  # (urlsplit and .port refuse "http://[::1" and ":99999" themselves, naming no setting)
        parts = urlsplit(base_url)
        _ = parts.port
    except ValueError:
        raise refused from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise refused
    if transport is not None:
        return transport, parts
    tls = None
    if scheme == "https":
        import certifi  # the CA bundle httpx uses (a dependency of httpx)

        tls = ssl.create_default_context(cafile=certifi.where())
    pool = ConnectionPool(parts.hostname, parts.port or (443 if tls is not None else 80), max_connections,
                          ssl=tls, connect_timeout=connect_timeout, pool_timeout=read_timeout,
                          idle_timeout=KEEPALIVE_EXPIRY_S)
    return pool, parts


def transport_failure(error: BaseException | None, status_code: int | None, *, lookup: bool) -> Answer | None:
    """The meaning of an exchange that brought no answer (None: there is one to read)."""
    if isinstance(error, ConnectFailed) and not lookup:
        return Answer(ChargeOutcome.FAILED, message=f"could not connect ({type(error).__name__}): nothing sent")
    if error is not None:
        kind = "timeout" if isinstance(error, HttpTimeout | TimeoutError) else "transport error"
        return Answer(ChargeOutcome.UNKNOWN, message=f"{kind} ({type(error).__name__}): outcome unknown")
    if status_code is None:
        return Answer(ChargeOutcome.UNKNOWN, message="no answer: outcome unknown")
    return None


# A Retry-After longer than this is no wait within an operation's deadline anyway.
_MAX_RETRY_AFTER_S = 3600


def retry_after_s(value: bytes | None) -> float | None:
    """A Retry-After in delta-seconds (RFC 9110 §10.2.3), or None: absent, or an HTTP-date
    (which would be read against a clock the processor does not share), or unreadable."""
    if value is None or not value.isdigit():
        return None
    return float(min(int(value[:8]), _MAX_RETRY_AFTER_S))


def processor_text(value: Any, limit: int = 200) -> str | None:
    """A text of the processor's, at most ``limit`` characters, without NUL (PostgreSQL's
    text cannot hold one), or None: not a string, empty, or holding a card number (in any
    spacing ``contains_card_number`` knows)."""
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "")
    if not text or contains_card_number(text):
        return None
    return text[:limit]


MAX_AUTH_CODE = 32  # transactions.auth_code
MAX_PROCESSOR_ID = 128  # transactions.processor_id, refunds.processor_id


def keepable_id(value: str | None, limit: int = MAX_PROCESSOR_ID) -> bool:
    """Whether ``value`` (None: no id) can be kept and found again as it is: not longer than
    its column, and without NUL (PostgreSQL's text cannot hold one). An id cut short or
    cleaned would name nothing at the processor."""
    return value is None or (len(value) <= limit and "\x00" not in value)


def auth_code(value: Any) -> str | None:
    """A processor's authorization code as the gateway keeps it, or None: no text, or
    longer than the gateway keeps (a code cut short would name nothing)."""
    text = processor_text(value, MAX_AUTH_CODE + 1)
    return text if text is not None and len(text) <= MAX_AUTH_CODE else None


def json_object(status_code: int, body: bytes | None) -> dict[str, Any] | Answer:
    """The answer's JSON object, or, when it is not one, its meaning: the outcome is unknown."""
    try:
        data = jsoncodec.loads(body or b"")
    except jsoncodec.JSONDecodeError:
        return Answer(ChargeOutcome.UNKNOWN, message=f"unparseable answer (HTTP {status_code}): outcome unknown")
    if not isinstance(data, dict):
        return Answer(ChargeOutcome.UNKNOWN, message=f"unexpected answer (HTTP {status_code}): outcome unknown")
    return data


def report_amount(value: Any) -> int:
    """A settlement report's amount: an integer (a bool is not one), else TypeError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("amount is not an integer")
    return value
