"""The archive in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, …).

Three calls are all the archive needs — PutObject, GetObject, ListObjectsV2 — so this is a
small AWS Signature V4 client over httpx instead of a dependency on an AWS SDK.
Configuration: ``PAYGATE_ARCHIVE_S3_BUCKET``, ``…_PREFIX``, ``…_ENDPOINT`` (e.g.
``http://127.0.0.1:9000``; path-style addressing), ``…_REGION``, ``…_ACCESS_KEY``,
``…_SECRET_KEY`` (else ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import httpx

from paygate_server.cdc.store import ObjectExists, ObjectMissing
from paygate_server.config import Settings

__all__ = ["S3Store", "S3Error", "sign_v4"]

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class S3Error(RuntimeError):
    pass


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _uri_encode(value: str, *, keep_slash: bool) -> str:
    return quote(value, safe="/-_.~" if keep_slash else "-_.~")


def _query_string(query: dict[str, str]) -> str:
    return "&".join(f"{_uri_encode(k, keep_slash=False)}={_uri_encode(v, keep_slash=False)}" for k, v in sorted(query.items()))


def sign_v4(method: str, path: str, query: dict[str, str], headers: dict[str, str], payload_sha256: str, *,
            access_key: str, secret_key: str, region: str, amz_date: str, service: str = "s3") -> str:
    """The ``Authorization`` header value (AWS Signature Version 4). ``headers`` must hold
    every header to sign (``host``, ``x-amz-date``, ``x-amz-content-sha256``, …)."""
    lowered = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    signed = sorted(lowered)
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in signed)
    canonical_request = "\n".join([method, _uri_encode(path, keep_slash=True), _query_string(query),
                                   canonical_headers, ";".join(signed), payload_sha256])
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode(), date), region), service), "aws4_request")
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"


class S3Store:
    def __init__(self, *, bucket: str, prefix: str, endpoint: str | None, region: str,
                 access_key: str, secret_key: str, timeout_s: float = 30.0) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        # An explicit endpoint (MinIO, …) is addressed path-style, AWS virtual-hosted-style.
        self._path_style = bool(endpoint)
        self._base = endpoint.rstrip("/") if endpoint else f"https://{bucket}.s3.{region}.amazonaws.com"
        self._http = httpx.AsyncClient(timeout=timeout_s, trust_env=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        access = settings.archive_s3_access_key or os.environ.get("AWS_ACCESS_KEY_ID")
        secret = settings.archive_s3_secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret or not settings.archive_s3_bucket:
            raise ValueError("the S3 archive needs PAYGATE_ARCHIVE_S3_BUCKET, _ACCESS_KEY and _SECRET_KEY")
        return cls(bucket=settings.archive_s3_bucket, prefix=settings.archive_s3_prefix,
                   endpoint=settings.archive_s3_endpoint, region=settings.archive_s3_region,
                   access_key=access, secret_key=secret)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    async def _request(self, method: str, key: str | None, *, query: dict[str, str] | None = None,
                       body: bytes = b"", extra: dict[str, str] | None = None) -> httpx.Response:
        path = f"/{self.bucket}" if self._path_style else ""
        path += f"/{key}" if key is not None else "/"
        query = query or {}
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"host": urlsplit(self._base).netloc, "x-amz-date": amz_date,
                   "x-amz-content-sha256": payload_hash, **(extra or {})}
        headers["authorization"] = sign_v4(method, path, query, headers, payload_hash, access_key=self._access_key,
                                           secret_key=self._secret_key, region=self.region, amz_date=amz_date)
        url = self._base + _uri_encode(path, keep_slash=True)
        if query:
            url += "?" + _query_string(query)
        return await self._http.request(method, url, headers=headers, content=body or None)

    async def put(self, name: str, data: bytes) -> None:
        r = await self._request("PUT", self._key(name), body=data)
        if r.status_code != 200:
            raise S3Error(f"PUT {name}: HTTP {r.status_code} {r.text[:200]}")

    async def put_new(self, name: str, data: bytes) -> None:
        """A conditional PUT (``If-None-Match: *``): 412 when the key exists, 409 when another
        conditional write of it is under way — either way this one did not write."""
        r = await self._request("PUT", self._key(name), body=data, extra={"if-none-match": "*"})
        if r.status_code in (409, 412):
            raise ObjectExists(name)
        if r.status_code != 200:
            raise S3Error(f"PUT {name}: HTTP {r.status_code} {r.text[:200]}")

    async def get(self, name: str) -> bytes:
        r = await self._request("GET", self._key(name))
        if r.status_code == 404:
            raise ObjectMissing(name)
        if r.status_code != 200:
            raise S3Error(f"GET {name}: HTTP {r.status_code} {r.text[:200]}")
        return r.content

    async def list(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        strip = len(self._key(""))
        names: list[str] = []
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": full}
            if token:
                query["continuation-token"] = token
            r = await self._request("GET", None, query=query)
            if r.status_code != 200:
                raise S3Error(f"LIST {prefix}: HTTP {r.status_code} {r.text[:200]}")
            root = ET.fromstring(r.content)
            names.extend(el.text[strip:] for el in root.iter(f"{_NS}Key") if el.text)
            if (root.findtext(f"{_NS}IsTruncated") or "false").lower() != "true":
                return sorted(names)
            token = root.findtext(f"{_NS}NextContinuationToken")

    async def close(self) -> None:
        await self._http.aclose()
