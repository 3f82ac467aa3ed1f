"""The SDK's public surface is pinned (as httpx does in tests/test_exported_members.py): a
name joins or leaves ``paygate.__all__`` only together with a change to this list, and
nothing else public-looking leaks from the package namespace."""

from __future__ import annotations

import importlib
import inspect

import pytest

import paygate

EXPECTED = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WAIT_STATUSES",
    "FINAL_STATUSES",
    "STREAM_END_STATUSES",  # stream_status()'s default: where the gateway ends the stream
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
    "HistoryEvent",  # the typed history (SPEC §4), with Attempt
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


def test_all_is_exactly_the_pinned_list() -> None:
    assert paygate.__all__ == EXPECTED


def test_every_exported_name_imports() -> None:
    module = importlib.import_module("paygate")
    for name in EXPECTED:
        exec(f"from paygate import {name}", {})  # the form a merchant writes
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from paygate import *", namespace)
    assert sorted(n for n in namespace if n != "__builtins__") == sorted(EXPECTED)


def test_nothing_public_outside_all() -> None:
    # What `dir(paygate)` and editors offer: every public-looking name is in __all__
    # (private modules and dunders aside).
    public = {name for name in vars(paygate) if not name.startswith("_")}
    assert public == {name for name in EXPECTED if not name.startswith("_")}


def test_exported_classes_and_functions_report_the_public_module() -> None:
    # Tracebacks and reprs show paygate.X, never the private module it lives in.
    for name in EXPECTED:
        obj = getattr(paygate, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == "paygate", name
    assert callable(paygate.webhooks.verify) and callable(paygate.webhooks.sign)


SUBMODULES = {
    "webhooks": [
        "DEFAULT_TOLERANCE",
        "SignatureVerificationError",
        "construct_event",
        "sign",
        "sign_headers",
        "verify",
    ],
    "signing": [
        "body_sha256",
        "canonical_string",
        "compute_signature",
        "format_timestamp",
        "new_nonce",
        "sign_request",
        "verify_signature",
    ],
}


@pytest.mark.parametrize("name", sorted(SUBMODULES))
def test_public_submodules_pin_their_all_and_show_nothing_else(name: str) -> None:
    # Was: paygate.webhooks and paygate.signing also offered `annotations` (the
    # `from __future__` import), and nothing pinned their __all__.
    module = importlib.import_module(f"paygate.{name}")
    assert module.__all__ == SUBMODULES[name]
    assert {n for n in vars(module) if not n.startswith("_")} == set(SUBMODULES[name])
