"""Helpers shared by the card tests (a unique module name: tests run without packages)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

NOW = datetime(2030, 6, 15, 12, 0, 0, tzinfo=UTC)
KID = "ck_test_current"

OAEP_SHA256 = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def card_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "number": "4242424242424242",
        "expMonth": 12,
        "expYear": 2034,
        "cvc": "123",
        "name": "Jane Doe",
        "generationTime": rfc3339(NOW - timedelta(minutes=1)),
    }
    payload.update(overrides)
    return {key: value for key, value in payload.items() if value is not ...}


