"""Fixtures for the card tests: one RSA key per session and a hand-rolled JWE builder.

The builder writes the compact serialization by hand (with ``cryptography``) so that tests
can produce the malformed and hostile tokens a real JOSE library refuses to make.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from card_jwe_helpers import KID, OAEP_SHA256, b64url, card_payload
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paygate_server.cards import generate_private_key


@pytest.fixture(scope="session")
def private_key() -> rsa.RSAPrivateKey:
    return generate_private_key(2048)


@pytest.fixture(scope="session")
def keys(private_key: rsa.RSAPrivateKey) -> dict[str, rsa.RSAPrivateKey]:
    return {KID: private_key}


BuildJwe = Callable[..., str]


@pytest.fixture
def build_jwe(private_key: rsa.RSAPrivateKey) -> BuildJwe:
    def build(
        payload: dict[str, Any] | bytes | None = None,
        *,
        header: dict[str, Any] | None = None,
        header_json: bytes | None = None,
        cek: bytes | None = None,
        iv: bytes | None = None,
        aad: bytes | None = None,
        wrap: Callable[[bytes], bytes] | None = None,
    ) -> str:
        if payload is None:
            payload = card_payload()
        plaintext = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if header_json is None:
            header_json = json.dumps(
                header if header is not None
                else {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": KID}
            ).encode()
        header_b64 = b64url(header_json)
        cek = os.urandom(32) if cek is None else cek
        iv = os.urandom(12) if iv is None else iv
        sealed = AESGCM(cek).encrypt(iv, plaintext, header_b64.encode() if aad is None else aad)
        ciphertext, tag = sealed[:-16], sealed[-16:]
        wrapped = (
            wrap(cek) if wrap is not None
            else private_key.public_key().encrypt(cek, OAEP_SHA256)
        )
        return ".".join([header_b64, b64url(wrapped), b64url(iv), b64url(ciphertext), b64url(tag)])

    return build
