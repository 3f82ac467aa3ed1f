"""The frame's security headers and the handling of merchant origins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from paygate_checkout import (
    choose_merchant_origin,
    frame_security_headers,
    is_valid_origin,
    normalize_origin,
    static_dir,
)


def test_frame_headers_exactly() -> None:
    headers = frame_security_headers(["https://shop.example", "http://localhost:5000"])
    assert headers["Content-Security-Policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors https://shop.example http://localhost:5000; "
        "base-uri 'none'; form-action 'none'"
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    # X-Frame-Options cannot allow another origin; frame-ancestors does the job.
    assert "X-Frame-Options" not in headers


def test_no_origins_means_nobody_may_frame() -> None:
    csp = frame_security_headers([])["Content-Security-Policy"]
    assert "frame-ancestors 'none';" in csp


def test_duplicate_origins_are_listed_once() -> None:
    csp = frame_security_headers(["https://a.example", "https://a.example"])["Content-Security-Policy"]
    assert "frame-ancestors https://a.example;" in csp


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "https://*.example",
        "https://shop.example; script-src *",
        "https://shop.example 'unsafe-inline'",
        "'self'",
        "https://shop.example/",
        "https://shop.example/path",
        "HTTPS://SHOP.EXAMPLE",
        "javascript:alert(1)",
        "data:",
        "https://shop.example:443",
        "http://shop.example:80",
        "https://shop.example:99999",
        "ftp://shop.example",
        "https://shop.example\n",
        "",
    ],
)
def test_anything_but_a_plain_origin_is_refused(origin: str) -> None:
    assert not is_valid_origin(origin)
    with pytest.raises(ValueError):
        frame_security_headers([origin])


@pytest.mark.parametrize(
    "origin",
    ["https://shop.example", "http://localhost:5000", "http://127.0.0.1:8080",
     "https://[::1]:8443", "https://xn--bcher-kva.example", "https://a-b.c-d.example:1"],
)
def test_plain_origins_are_accepted(origin: str) -> None:
    assert is_valid_origin(origin)


@pytest.mark.parametrize(
    ("typed", "origin"),
    [
        ("HTTPS://Shop.Example:443/", "https://shop.example"),
        ("https://shop.example", "https://shop.example"),
        (" http://localhost:5000/ ", "http://localhost:5000"),
        ("http://[::1]:80", "http://[::1]"),
        ("https://Bücher.example", "https://xn--bcher-kva.example"),
    ],
)
def test_normalize_origin(typed: str, origin: str) -> None:
    assert normalize_origin(typed) == origin


@pytest.mark.parametrize(
    "typed",
    ["https://shop.example/checkout", "https://shop.example?x=1", "https://u:p@shop.example",
     "shop.example", "ftp://shop.example", "https://", "https://shop.example:70000",
     "https://shop.example#frag"],
)
def test_normalize_origin_refuses(typed: str) -> None:
    with pytest.raises(ValueError):
        normalize_origin(typed)


def test_choose_merchant_origin() -> None:
    allowed = ["https://a.example", "https://b.example"]
    assert choose_merchant_origin(allowed, "https://b.example") == "https://b.example"
    assert choose_merchant_origin(allowed, "https://evil.example") == "https://a.example"
    assert choose_merchant_origin(allowed, None) == "https://a.example"
    assert choose_merchant_origin([], "https://a.example") is None


def test_scripts_never_post_to_any_origin() -> None:
    """Every postMessage in the frame names the merchant's origin; checkout.js sends none."""
    frame_js = (static_dir() / "frame.js").read_text()
    calls = re.findall(r"postMessage\(([^)]*)\)", frame_js)
    assert calls == ["message, config.merchantOrigin"]
    checkout_js = (static_dir() / "checkout.js").read_text()
    assert "postMessage(" not in checkout_js
    # checkout.js checks both the sender window and its origin, with strict equality.
    assert "event.source !== iframe.contentWindow || event.origin !== gatewayOrigin" in checkout_js
    for path in Path(static_dir()).glob("*.js"):
        assert '"*"' not in path.read_text(), path.name
