"""Reading a ``Host`` field, and which names DNS rebinding cannot claim (http/hosts.py)."""
from __future__ import annotations

import pytest

from paygate_server.http.hosts import (
    HostName,
    host_names_in,
    parse_host,
    safe_without_configuration,
)


@pytest.mark.parametrize(("value", "read"), [
    ("127.0.0.1", HostName("127.0.0.1", None)),
    ("127.0.0.1:8083", HostName("127.0.0.1", 8083)),
    ("[::1]:8083", HostName("::1", 8083)),
    ("[::FFFF:127.0.0.1]", HostName("::ffff:127.0.0.1", None)),
    ("LocalHost:1", HostName("localhost", 1)),
    ("console.example.com", HostName("console.example.com", None)),
    ("console.example.com:65535", HostName("console.example.com", 65535)),
])
def test_a_readable_host(value: str, read: HostName) -> None:
    assert parse_host(value) == read


@pytest.mark.parametrize("value", [
    None, "", "::1", "[::1", "[::1]x", "[::1]:", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:+80",
    "127.0.0.1:0x50", "a:b:c", "127.0.0.1:80:1", "user@127.0.0.1", "127.0.0.1/x", "a b", "a\tb",
    "[v1.x]", "[::1%25eth0]", "[example.com]", "]", "[", "a\\b", "a?b", "a#b", "x" * 301,
])
def test_an_unreadable_host(value: str | None) -> None:
    assert parse_host(value) is None


@pytest.mark.parametrize(("value", "safe"), [
    ("127.0.0.1", True), ("10.0.0.5:80", True), ("[::1]", True), ("[2001:db8::1]:443", True),
    ("localhost", True), ("LOCALHOST:8083", True),
    # Names: a DNS answer, so a rebinding page's as much as anyone's.
    ("localhost.", False), ("localhost.example", False), ("127.0.0.1.", False), ("127.0.0.1.nip.io", False),
    ("127.1", False), ("2130706433", False), ("0x7f.1", False), ("console.example.com", False),
])
def test_names_safe_without_configuration(value: str, safe: bool) -> None:
    host = parse_host(value)
    assert host is not None and safe_without_configuration(host) is safe


def test_every_host_field_is_found() -> None:
    headers = [(b"host", b"a"), (b"x-host", b"b"), (b"host", b"c")]
    assert host_names_in(headers) == ["a", "c"]
