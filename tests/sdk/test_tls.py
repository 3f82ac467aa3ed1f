"""A gateway whose certificate the client does not trust is a connection error, from both
clients, whatever httpcore 1.x is installed (docs/sdk.md, "Supported versions")."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import paygate
from tests.support.tls_proxy import TlsProxy

from .conftest import API_KEY, SIGNING_SECRET, resolve

NO_WAIT = paygate.Backoff(initial_delay=0.0)


@pytest.fixture
def untrusted_gateway(tmp_path: Path) -> Iterator[str]:
    """An https URL on loopback answered with a self-signed certificate for ``localhost``:
    the handshake fails on the client's side, before any request is sent."""
    proxy = TlsProxy("localhost", tmp_path)
    proxy.start(9)  # never reached: no client completes the handshake
    try:
        yield f"https://localhost:{proxy.port}"
    finally:
        proxy.close()


@pytest.mark.parametrize("client_class", [paygate.Client, paygate.AsyncClient])
async def test_an_untrusted_certificate_is_a_connection_error(
    untrusted_gateway: str, client_class: Any
) -> None:
    # Was, with httpcore < 1.0.6 (which httpx 0.27's httpcore==1.* admits): the async client
    # let ssl.SSLCertVerificationError out raw, past `except paygate.APIConnectionError`.
    client = client_class(
        API_KEY, SIGNING_SECRET, untrusted_gateway, max_retries=1, backoff=NO_WAIT
    )
    try:
        with pytest.raises(paygate.APIConnectionError) as info:
            await resolve(client.payment_intents.get("pi_123"))
    finally:
        await resolve(client.aclose() if hasattr(client, "aclose") else client.close())
    assert "after 2 attempt(s)" in str(info.value)  # retried, as any connection error
    causes = []
    cause: BaseException | None = info.value
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    assert any(isinstance(c, ssl.SSLCertVerificationError) for c in causes), causes
