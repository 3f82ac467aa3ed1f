"""Everything the sync and async clients share: building, signing and retrying decisions,
and turning answers into results or exceptions.

Only the send/sleep loop is written twice (``_client.py``); it calls, in order:

1. ``_prepare(options)`` once per logical call: serializes the body to bytes *once*, fixes
   the URL and request target, and sets the ``Idempotency-Key`` (the caller's, or a new
   UUID for every POST) *before* the loop, so every retry carries the same key and bytes;
2. ``_build_attempt(prepared)`` per attempt: a fresh timestamp, nonce and signature over
   exactly those bytes;
3. ``_retry_or_raise(prepared, attempt, ...)`` after a failure: a delay, or the mapped
   exception;
4. ``_decode(response)`` on success.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from . import _json
from ._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    IdempotencyError,
    InvalidRequestError,
    PaygateError,
    RateLimitError,
)
from ._retry import (
    IN_PROGRESS_CODE,
    Backoff,
    is_retryable_exception,
    is_retryable_response,
    parse_retry_after,
)
from ._signing import sign_request
from ._version import __version__

logger = logging.getLogger("paygate")

#: Default HTTP timeouts; long-polls and streams extend the read timeout themselves.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
DEFAULT_MAX_RETRIES = 3
_MAX_BODY_IN_ERROR = 2000
#: A timer that fires a hair before the deadline (clock granularity) still counts as it.
_DEADLINE_SLACK = 0.05
#: The most of one answer the client reads, decoded. The gateway's largest (a page of
#: intents, an intent's history) are well under a MiB; past this, a broken proxy or a
#: compression bomb would only fill the merchant's memory.
MAX_ANSWER_BYTES = 32 << 20
_BODY_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})

ParamValue = str | int
JSONObject = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Deadline:
    """An overall deadline over every attempt of one call, on the client's monotonic clock
    (``BaseClient._clock``): each attempt's HTTP timeouts are cut to the time left, and a
    failure that leaves no time for another attempt raises ``expired()`` instead of
    retrying. The waits (``wait_for_status``, ``stream_status``) use it so that their
    ``timeout`` holds against a gateway that never answers: without it every attempt had the
    full read timeout, and a wait of 1 s took 4 x that before an ``APITimeoutError``."""

    at: float
    expired: Callable[[], PaygateError]


@dataclass(frozen=True)
class RequestOptions:
    """One logical API call, as the resources describe it."""

    method: str
    path: str
    params: Mapping[str, ParamValue] | None = None
    body: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    #: Requests outside ``/api/v1`` (the public checkout keys) are not signed.
    signed: bool = True
    timeout: httpx.Timeout | None = None
    stream: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    deadline: Deadline | None = None


@dataclass(frozen=True)
class PreparedRequest:
    """What stays fixed across the attempts of one logical call."""

    method: str
    url: httpx.URL
    target: str
    content: bytes
    headers: Mapping[str, str]
    timeout: httpx.Timeout
    stream: bool
    signed: bool
    deadline: Deadline | None = None

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("Idempotency-Key")


def printable_ascii(text: str) -> bool:
    """Whether ``text`` can be a header value as it is (httpx encodes values as ASCII)."""
    return all(" " <= ch <= "~" for ch in text)


def validate_idempotency_key(key: str) -> str:
    if not 1 <= len(key) <= 255 or not printable_ascii(key):
        raise ValueError("idempotency_key must be 1-255 printable ASCII characters")
    return key


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The body, serialized once; these exact bytes are hashed, signed and sent.

    ``allow_nan=False``: a NaN or infinity (in ``product_details``, say) would go out as
    ``NaN``, which is not JSON; it is a ``ValueError`` here, before anything is sent."""
    return json.dumps(
        body, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _mask(key: str) -> str:
    prefix, sep, _ = key.rpartition("_")
    return f"{prefix}{sep}…" if sep else "…"


_ERROR_CLASS_BY_TYPE: dict[str, type[PaygateError]] = {
    "invalid_request_error": InvalidRequestError,
    "authentication_error": AuthenticationError,
    "idempotency_error": IdempotencyError,
    "rate_limit_error": RateLimitError,
    "api_error": APIError,
}


def error_class(status: int | None, code: str | None, error_type: str | None) -> type[PaygateError]:
    """The exception class for an error answer (SPEC §2's table).

    The HTTP status decides (it is always there; ``type`` may not be), refined by the code
    for the one 409 that is an idempotency matter. Without a status (an error event on a
    stream) the wire ``type`` decides.
    """
    if status is None:
        return _ERROR_CLASS_BY_TYPE.get(error_type or "", APIError)
    if status in (401, 403):
        return AuthenticationError
    if status == 422 or (status == 409 and code == IN_PROGRESS_CODE):
        return IdempotencyError
    if status == 429:
        return RateLimitError
    if 400 <= status < 500:
        return InvalidRequestError
    return APIError


#: The most of one peer-given text (an error's message, code, request id) an exception keeps.
_MAX_FIELD = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: str) -> str:
    """A peer-given text fit for an exception message and a log line: control characters
    (line ends first) become one space, and it is cut to ``_MAX_FIELD`` characters. A
    gateway's, or a proxy's, error message must not forge lines in the merchant's logs or
    fill them; the raw body stays in ``http_body``."""
    text = _CONTROL.sub(" ", text)
    return text if len(text) <= _MAX_FIELD else text[: _MAX_FIELD - 1] + "…"


def error_from_body(
    body: Any,
    *,
    status: int | None,
    headers: Mapping[str, str] | None = None,
    text: str | None = None,
    fallback_message: str,
) -> PaygateError:
    """Build the exception for an error body; any shape (or none) is accepted."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}

    def field_(name: str) -> str | None:
        value = error.get(name)
        return one_line(value) if isinstance(value, str) and value else None

    code, error_type = field_("code"), field_("type")
    request_id = field_("requestId")
    if request_id is None and headers is not None:
        request_id = headers.get("x-request-id")
    cls = error_class(status, code, error_type)
    return cls(
        field_("message") or fallback_message,
        http_status=status,
        code=code,
        param=field_("param"),
        request_id=request_id,
        error_type=error_type,
        headers=headers,
        http_body=text[:_MAX_BODY_IN_ERROR] if text is not None else None,
    )


def error_from_response(response: httpx.Response) -> PaygateError:
    """The exception for an error answer whose body has been read. A body that is not
    JSON (a proxy's HTML page, an empty 502) still gives the right class."""
    try:
        text: str | None = response.text
    # UnicodeError, not only UnicodeDecodeError: utf-16 without a BOM raises the former.
    except (UnicodeError, LookupError):
        text = None
    try:
        body: Any = _json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        body = None
    reason = response.reason_phrase or "error"
    return error_from_body(
        body,
        status=response.status_code,
        headers=response.headers,
        text=text,
        fallback_message=f"HTTP {response.status_code} {reason}",
    )


def answer_error(
    response: httpx.Response, message: str, *, http_body: str | None = None
) -> APIError:
    """An ``APIError`` about ``response``, an answer that is not the contract's: its
    status, request id and headers with ``message``."""
    return APIError(
        message,
        http_status=response.status_code,
        request_id=response.headers.get("x-request-id"),
        headers=response.headers,
        http_body=http_body,
    )


def undecodable(response: httpx.Response) -> APIError:
    """The exception for an answer whose body httpx could not decode (a
    ``Content-Encoding`` that does not match the bytes): an answer, but not the contract's."""
    encoding = response.headers.get("content-encoding", "")
    return answer_error(
        response,
        f"the gateway answered HTTP {response.status_code} with a body that could not be "
        f"decoded (Content-Encoding: {encoding[:40]!r})",
    )


class AnswerBudget:
    """What one answer may take while its body is read, in bytes and in time.

    httpx's read timeout bounds each socket read, not the answer: a peer that drips a byte
    just inside it holds the call forever. Here the whole body must arrive within the
    attempt's read timeout, counted from the response head (``httpx.ReadTimeout`` past it,
    retried like any other timeout), and be at most ``MAX_ANSWER_BYTES`` decoded
    (``APIError``, not retried)."""

    def __init__(self, response: httpx.Response, clock: Callable[[], float]) -> None:
        self.response = response
        self.clock = clock
        self.size = 0
        read = response.request.extensions.get("timeout", {}).get("read")
        self.ends = None if read is None else clock() + float(read)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            raise self.too_large()

    def take(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > MAX_ANSWER_BYTES:
            raise self.too_large()
        if self.ends is not None and self.clock() > self.ends:
            raise httpx.ReadTimeout(
                "the answer did not arrive within the read timeout", request=self.response.request
            )
        return chunk

    def answer(self, chunks: list[bytes]) -> httpx.Response:
        """The response with the body read (decoded), as ``response.read()`` would have
        left it. A new response (public API only): its ``Content-Encoding`` and framing
        headers are dropped, as they described bytes that are now decoded."""
        response = self.response
        # The raw bytes: the decoded texts would be re-encoded as ASCII, and a header with a
        # byte past 0x7f (a proxy's, in UTF-8) was a UnicodeEncodeError out of the call.
        headers = [
            (name, value)
            for name, value in response.headers.raw
            if name.decode("latin-1").lower() not in _BODY_FRAMING
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=b"".join(chunks),
            request=response.request,
            extensions=response.extensions,
        )

    def too_large(self) -> APIError:
        response = self.response
        return answer_error(
            response,
            f"the gateway answered HTTP {response.status_code} with a body over "
            f"{MAX_ANSWER_BYTES} bytes",
        )


class BaseClient:
    """Configuration and the request path shared by ``Client`` and ``AsyncClient``."""

    def __init__(
        self,
        api_key: str,
        signing_secret: str,
        base_url: str,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        backoff: Backoff | None = None,
        user_agent: str | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key is required")
        if not isinstance(signing_secret, str) or not signing_secret:
            raise ValueError("signing_secret is required")
        if not all("!" <= ch <= "~" for ch in api_key):
            # It goes in a header: httpx/h11 would refuse a newline (a key read from a file
            # or an environment variable with its line end) with an error, and a debug log
            # line, quoting the whole header, key included; a non-ASCII one escaped as a
            # UnicodeEncodeError holding it. Refused here, without echoing it.
            raise ValueError(
                "api_key must be printable ASCII without spaces or line ends "
                "(strip what was read from a file or an environment variable)"
            )
        if api_key.startswith("sk_"):
            # The signing secret must never go on the wire: refuse before any request.
            raise ValueError("api_key looks like a signing secret (sk_…); pass the pk_… key")
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL:
            # As a ValueError, like every other refusal of the configuration here.
            raise ValueError("base_url is not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an absolute http(s) URL")
        if url.query or url.fragment or "?" in base_url or "#" in base_url:
            # An empty one too (``https://gw.example/?``): httpx keeps it, the API's path
            # would follow it, and every request would go to ``/`` with its path as a query.
            raise ValueError("base_url must not have a query or fragment")
        if url.userinfo:
            # It would show in repr(client), in httpx's log lines and in errors naming the
            # URL; the gateway authenticates by signature, not by a password in the URL.
            raise ValueError("base_url must not carry a user name or password")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._api_key = api_key
        self._signing_secret = signing_secret
        self.base_url = str(url).rstrip("/")
        self.max_retries = max_retries
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.backoff = backoff if backoff is not None else Backoff()
        self._user_agent = user_agent or f"paygate-python/{__version__} httpx/{httpx.__version__}"

    # Replaced by tests (and by nothing else): the only place the client reads the clock.
    _clock = staticmethod(time.monotonic)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} base_url={self.base_url!r} api_key={_mask(self._api_key)!r}>"
        )

    # -- the shared request path ----------------------------------------------------------

    def _prepare(self, options: RequestOptions) -> PreparedRequest:
        method = options.method.upper()
        params = {k: v for k, v in (options.params or {}).items()}
        url = httpx.URL(self.base_url + options.path, params=params or None)
        content = encode_body(options.body) if options.body is not None else b""
        headers: dict[str, str] = {"Accept": "application/json", "User-Agent": self._user_agent}
        if content:
            headers["Content-Type"] = "application/json"
        if options.signed:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if method == "POST":
            # Set once, before the retry loop: every attempt of this call carries it.
            key = options.idempotency_key
            headers["Idempotency-Key"] = (
                validate_idempotency_key(key) if key is not None else str(uuid.uuid4())
            )
        elif options.idempotency_key is not None:
            raise ValueError("idempotency_key only applies to POST requests")
        headers.update(options.headers)
        return PreparedRequest(
            method=method,
            url=url,
            # The request target exactly as httpx puts it on the wire (with any base-URL
            # prefix, percent-encoding and query string).
            target=url.raw_path.decode("ascii"),
            content=content,
            headers=headers,
            timeout=options.timeout or self.timeout,
            stream=options.stream,
            signed=options.signed,
            deadline=options.deadline,
        )

    def _build_attempt(self, prepared: PreparedRequest) -> httpx.Request:
        headers = dict(prepared.headers)
        if prepared.signed:
            # A fresh timestamp and nonce every attempt: the gateway refuses a reused nonce.
            headers.update(
                sign_request(
                    self._signing_secret, prepared.method, prepared.target, prepared.content
                )
            )
        return httpx.Request(
            prepared.method,
            prepared.url,
            headers=headers,
            content=prepared.content or None,
            extensions={"timeout": self._attempt_timeout(prepared).as_dict()},
        )

    def _attempt_timeout(self, prepared: PreparedRequest) -> httpx.Timeout:
        """The call's timeouts, each cut to what is left of its deadline (if any);
        ``deadline.expired()`` if nothing is left."""
        timeout, deadline = prepared.timeout, prepared.deadline
        if deadline is None:
            return timeout
        left = deadline.at - self._clock()
        if left <= 0:
            raise deadline.expired()

        def cut(value: float | None) -> float:
            return left if value is None else min(value, left)

        return httpx.Timeout(
            connect=cut(timeout.connect),
            read=cut(timeout.read),
            write=cut(timeout.write),
            pool=cut(timeout.pool),
        )

    def _retry_or_raise(
        self,
        prepared: PreparedRequest,
        attempt: int,
        *,
        response: httpx.Response | None = None,
        exc: Exception | None = None,
    ) -> float:
        """After a failed attempt (``attempt`` 0-based): the delay before the next one, or
        raise the exception the failure maps to. An error response must have been read."""
        retryable = (
            is_retryable_exception(exc)
            if exc is not None
            else response is not None and is_retryable_response(response)
        )
        deadline = prepared.deadline
        if retryable and attempt < self.max_retries:
            retry_after = parse_retry_after(response.headers) if response is not None else None
            delay = self.backoff.delay(attempt, retry_after)
            if deadline is not None and self._clock() + delay >= deadline.at:
                # No time for another attempt: the wait is over, whatever the last one was.
                raise deadline.expired() from (
                    exc if response is None else error_from_response(response)
                )
            what = f"HTTP {response.status_code}" if response is not None else type(exc).__name__
            logger.info(
                "paygate: %s %s failed (%s); retry %d/%d in %.2f s",
                prepared.method,
                prepared.url.path,
                what,
                attempt + 1,
                self.max_retries,
                delay,
            )
            return delay
        if response is not None:
            raise error_from_response(response)
        if (
            isinstance(exc, httpx.TimeoutException)
            and deadline is not None
            and self._clock() >= deadline.at - _DEADLINE_SLACK
        ):
            # The attempt's timeout was the deadline's (cut by _attempt_timeout).
            raise deadline.expired() from exc
        if isinstance(exc, httpx.TimeoutException):
            raise APITimeoutError(
                f"the request timed out ({type(exc).__name__}) after {attempt + 1} attempt(s)"
            ) from exc
        raise APIConnectionError(
            f"could not reach the gateway ({type(exc).__name__}: {exc}) "
            f"after {attempt + 1} attempt(s)"
        ) from exc

    def _retry_undecodable(
        self, prepared: PreparedRequest, attempt: int, response: httpx.Response, exc: Exception
    ) -> float:
        """After an answer whose body would not decode: a 429 or 5xx is retried like any
        other (the status alone says the gateway or a proxy failed, and the key makes the
        retry safe); any other status, or the last attempt, raises :func:`undecodable`."""
        status = response.status_code
        if (status == 429 or status >= 500) and attempt < self.max_retries:
            return self._retry_or_raise(prepared, attempt, response=response)
        raise undecodable(response) from exc

    def _log_response(self, prepared: PreparedRequest, response: httpx.Response) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "paygate: %s %s -> %d (request id %s)",
                prepared.method,
                prepared.url.path,
                response.status_code,
                response.headers.get("x-request-id"),
            )

    @classmethod
    def _parse(cls, response: httpx.Response, parse: Callable[[Any], T]) -> T:
        """``parse`` applied to the JSON of a successful answer. A body of the wrong shape
        (``parse`` raises ``APIError``) is reported with this answer's status, request id
        and body, like any other answer that is not the contract's."""
        body = cls._decode(response)
        try:
            return parse(body)
        except APIError as exc:
            if exc.http_status is not None:
                raise
            text = response.content.decode("utf-8", "replace")
            raise answer_error(
                response, exc.message, http_body=text[:_MAX_BODY_IN_ERROR]
            ) from None

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        """The JSON of a successful answer (``None`` for an empty one, e.g. 204)."""
        if response.status_code == 204 or not response.content:
            return None
        try:
            return _json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise answer_error(
                response,
                f"the gateway answered HTTP {response.status_code} with a body that is not JSON",
            ) from None
