"""Where webhooks may go: URL rules and the private-address guard (SPEC §6).

A webhook URL must not let a merchant make the gateway call into its own network (SSRF).
Its host is resolved and refused if any address is loopback, private, link-local,
multicast, reserved or otherwise not globally routable — unless the operator allows it
(``PAYGATE_WEBHOOK_ALLOW_PRIVATE=1``, the local demo). The check runs when the endpoint is
created *and* on every delivery, inside the connection itself (:class:`GuardedBackend`):
the gateway connects to the very addresses it has just checked, so a DNS answer that
changes in between (DNS rebinding) cannot slip a private address in.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any, Iterable
from urllib.parse import SplitResult, urlsplit

import httpcore

__all__ = ["AddressRefused", "parse_webhook_url", "address_allowed", "check_destination", "resolve_host",
           "GuardedBackend", "MAX_URL_LENGTH"]

MAX_URL_LENGTH = 2048


class AddressRefused(Exception):
    """The destination is not allowed (or cannot be resolved)."""


def parse_webhook_url(url: str) -> SplitResult:
    """Syntax only: ``http(s)://host[:port]/path[?query]``, no credentials, no fragment."""
    if len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise ValueError(f"url must be at most {MAX_URL_LENGTH} characters, without spaces")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("url must be an http:// or https:// URL with a host")
    if parts.username or parts.password or parts.fragment:
        raise ValueError("url must not contain credentials or a fragment")
    try:
        parts.port
    except ValueError:
        raise ValueError("url has an invalid port") from None
    return parts


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def address_allowed(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = addr.ipv4_mapped or addr.sixtofour or (addr.teredo[1] if addr.teredo else None)
        if embedded is not None:
            addr = embedded
    return addr.is_global and not addr.is_multicast


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address the host resolves to (tests replace this to simulate DNS)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        ip = str(info[4][0])
        if ip not in seen:
            seen.append(ip)
    return seen


async def check_destination(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses to connect to; AddressRefused if none may be used."""
    host = host.strip("[]")
    try:
        ips = await resolve_host(host, port)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"the host {host} does not resolve") from exc
    if not ips:
        raise AddressRefused(f"the host {host} does not resolve")
    if not allow_private:
        refused = [ip for ip in ips if not address_allowed(ip)]
        if refused:
            raise AddressRefused(f"the host {host} resolves to a loopback, private or link-local address "
                                 f"({refused[0]}); webhooks go to public addresses only")
    return ips


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the guard in ``connect_tcp``: resolve, check, then
    connect to the checked address. TLS still verifies the original host name."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        ips = await check_destination(host, port, allow_private=self._allow_private)
        last: Exception | None = None
        for ip in ips:
            try:
                return await self._inner.connect_tcp(ip, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("webhooks never go to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
