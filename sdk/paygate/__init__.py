"""paygate: the merchant SDK of the paygate payment gateway.

::

    import paygate

    with paygate.Client(API_KEY, SIGNING_SECRET, "http://127.0.0.1:8000") as client:
        intent = client.payment_intents.create(
            amount=1999, currency="USD", product_details={"sku": "mug-01"})
        client.payment_intents.process(intent.id, token=token)
        status = client.payment_intents.wait_for_status(intent.id)

Depends on ``httpx`` and ``cryptography`` only. Everything public is listed in
``__all__``; modules whose names start with ``_`` are private.
"""

from __future__ import annotations

from . import signing, webhooks
from ._base_client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from ._client import AsyncClient, Client
from ._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    CardError,
    IdempotencyError,
    InvalidRequestError,
    PaygateError,
    RateLimitError,
    SignatureVerificationError,
    WaitTimeoutError,
)
from ._jwe import encrypt_card, jwe_encrypt
from ._models import (
    DEFAULT_WAIT_STATUSES,
    FINAL_STATUSES,
    STREAM_END_STATUSES,
    Attempt,
    Card,
    Event,
    HistoryEvent,
    IntentStatus,
    LastError,
    Page,
    PaymentIntent,
    PaymentStatus,
    Refund,
    WebhookEndpoint,
)
from ._retry import Backoff
from ._signing import (
    body_sha256,
    canonical_string,
    compute_signature,
    format_timestamp,
    sign_request,
    verify_signature,
)
from ._version import __version__

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WAIT_STATUSES",
    "FINAL_STATUSES",
    "STREAM_END_STATUSES",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "Attempt",
    "AuthenticationError",
    "Backoff",
    "Card",
    "CardError",
    "Client",
    "Event",
    "HistoryEvent",
    "IdempotencyError",
    "IntentStatus",
    "InvalidRequestError",
    "LastError",
    "Page",
    "PaygateError",
    "PaymentIntent",
    "PaymentStatus",
    "RateLimitError",
    "Refund",
    "SignatureVerificationError",
    "WaitTimeoutError",
    "WebhookEndpoint",
    "__version__",
    "body_sha256",
    "canonical_string",
    "compute_signature",
    "encrypt_card",
    "format_timestamp",
    "jwe_encrypt",
    "sign_request",
    "signing",
    "verify_signature",
    "webhooks",
]

# Report public names as paygate.X (as httpx does), so tracebacks and reprs show the
# public path rather than a private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("paygate._"):
        try:
            _obj.__module__ = "paygate"
        except (AttributeError, TypeError):  # pragma: no cover - builtins, constants
            pass
del _name, _obj
# The `from __future__` import binds a public-looking name; the compiler flag outlives it.
del annotations
