"""The SDK's exceptions.

Every exception the SDK raises on purpose derives from ``PaygateError``::

    PaygateError
    ├── AuthenticationError ........ 401 (and 403): missing_credentials, invalid_api_key,
    │                                invalid_signature, stale_timestamp, nonce_reused
    ├── InvalidRequestError ........ 400, 404, 409 intent_state_conflict, 413, other 4xx
    ├── IdempotencyError ........... 422 idempotency_key_reused; 409
    │                                idempotency_request_in_progress once retries run out
    ├── RateLimitError ............. 429 rate_limited (after retries)
    ├── APIError ................... 5xx (after retries), or an answer that is not the
    │                                JSON the contract promises
    ├── APIConnectionError ......... no answer at all: DNS, refused, reset (after retries)
    │   └── APITimeoutError ........ the HTTP timeout expired (also a builtin TimeoutError)
    ├── CardError .................. a payment attempt failed (card declined, processor
    │                                error); raised only on request, by raise_if_failed()
    ├── WaitTimeoutError ........... wait_for_status()/stream_status() deadline passed
    │                                (also a builtin TimeoutError)
    └── SignatureVerificationError . a webhook failed verification

Each carries ``http_status``, ``code``, ``param``, ``message``, ``request_id``,
``headers``, ``error_type`` (the wire ``type``) and ``http_body`` (the raw body text, or
``None``). Fields the situation does not have are ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import LastError, PaymentIntent, PaymentStatus

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "CardError",
    "IdempotencyError",
    "InvalidRequestError",
    "PaygateError",
    "RateLimitError",
    "SignatureVerificationError",
    "WaitTimeoutError",
]


class PaygateError(Exception):
    """Base class of every error the SDK raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        http_body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.param = param
        self.request_id = request_id
        self.error_type = error_type
        self.headers: Mapping[str, str] = dict(headers) if headers is not None else {}
        self.http_body = http_body

    def __str__(self) -> str:
        prefix = ""
        if self.http_status is not None:
            prefix += f"{self.http_status} "
        if self.code:
            prefix += f"{self.code}: "
        suffix = f" (request id: {self.request_id})" if self.request_id else ""
        return f"{prefix}{self.message}{suffix}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep every field through pickling (multiprocessing, task queues): the default
        # would call __init__ with the message alone.
        return (_restore, (type(self), self.args, self.__dict__))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, http_status={self.http_status!r}, "
            f"code={self.code!r}, param={self.param!r}, request_id={self.request_id!r})"
        )


class AuthenticationError(PaygateError):
    """The gateway refused the credentials or the request signature (401)."""


class InvalidRequestError(PaygateError):
    """The request was refused as invalid: 400, 404, 409 ``intent_state_conflict``, 413."""


class IdempotencyError(PaygateError):
    """An ``Idempotency-Key`` was reused with another request (422), or the first request
    with that key was still executing on every retry (409
    ``idempotency_request_in_progress``)."""


class RateLimitError(PaygateError):
    """Too many requests (429), still refused after the retries."""


class APIError(PaygateError):
    """The gateway failed (5xx) or answered something that is not the contract's JSON."""


class APIConnectionError(PaygateError):
    """No HTTP answer at all (DNS, connection refused or reset), after the retries."""


class APITimeoutError(APIConnectionError, TimeoutError):
    """The HTTP timeout expired on every attempt."""


class CardError(PaygateError):
    """A payment attempt failed: the intent is ``failed`` with ``lastError``.

    A decline is not an HTTP error (SPEC §2): ``process()`` and the status calls return
    the intent. ``PaymentIntent.raise_if_failed()`` / ``PaymentStatus.raise_if_failed()``
    raise this for callers who prefer an exception. ``code`` is ``lastError.code`` (e.g.
    ``card_declined``), ``decline_code`` its ``declineCode`` (e.g. ``insufficient_funds``).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        decline_code: str | None = None,
        payment_intent_id: str | None = None,
        last_error: LastError | None = None,
        payment: PaymentIntent | PaymentStatus | None = None,
    ) -> None:
        super().__init__(message, http_status=200, code=code)
        self.decline_code = decline_code
        self.payment_intent_id = payment_intent_id
        self.last_error = last_error
        self.payment = payment


class WaitTimeoutError(PaygateError, TimeoutError):
    """The overall deadline of ``wait_for_status()`` / ``stream_status()`` passed before
    the intent reached one of the awaited statuses. ``last_status`` is the last status seen
    (``None`` if none was)."""

    def __init__(self, message: str, *, last_status: PaymentStatus | None = None) -> None:
        super().__init__(message)
        self.last_status = last_status


class SignatureVerificationError(PaygateError):
    """A webhook's signature, timestamp or headers did not verify."""


def _restore(cls: type[PaygateError], args: tuple[Any, ...], state: dict[str, Any]) -> PaygateError:
    error = cls.__new__(cls, *args)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
