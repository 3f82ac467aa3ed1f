"""Where webhooks may go: URL rules and the private-address guard (SPEC §6).

A webhook URL must not let a merchant make the gateway call into its own network (SSRF).
Its host is resolved and refused if any address is loopback, private, link-local,
multicast, reserved or otherwise not globally routable — for IPv6: anything but global
unicast, or an address that carries a refused IPv4 destination (IPv4-mapped, NAT64, 6to4;
Teredo and the other IPv4-carrying forms are refused outright) — unless the operator allows it
(``PAYGATE_WEBHOOK_ALLOW_PRIVATE=1``, the local demo). The check runs when the endpoint is
created *and* on every delivery, inside the connection itself (:class:`GuardedBackend`):
the gateway connects to the very addresses it has just checked, so a DNS answer that
changes in between (DNS rebinding) cannot slip a private address in.

Names are resolved by the system resolver, which blocks a thread per look-up until the
name's nameservers answer or its own timeout (seconds to tens of seconds) runs out — and a
merchant can register a name whose nameservers never answer. The look-ups therefore run on
threads of their own (:data:`RESOLVER_THREADS`), never the event loop's default executor,
which the archive, the console's password hashing and the database drivers' own look-ups
need; registrations have threads apart from deliveries' (:func:`registration_lookups`);
and concurrent look-ups of one name share one thread (an attempt that times out leaves its
look-up running: the next attempt joins it instead of starting another).
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
import weakref
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpcore

from paygate_server.singleflight import SingleFlight

__all__ = ["AddressRefused", "parse_webhook_url", "default_port", "address_allowed", "check_destination", "resolve_host",
           "GuardedBackend", "registration_lookups", "MAX_URL_LENGTH", "ALLOW_PRIVATE_VARIABLE"]

MAX_URL_LENGTH = 2048
# The operator's switch (config.Settings.webhook_allow_private), named in refusals.
ALLOW_PRIVATE_VARIABLE = "PAYGATE_WEBHOOK_ALLOW_PRIVATE"


class AddressRefused(Exception):
    """The destination is not allowed (or cannot be resolved)."""


def parse_webhook_url(url: str) -> SplitResult:
    """Syntax only: ``http(s)://host[:port]/path[?query]``, no credentials, no fragment."""
    if len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise ValueError(f"url must be at most {MAX_URL_LENGTH} characters, without spaces")
    try:  # (urlsplit refuses "http://[::1" itself, once as "Invalid IPv6 URL", naming no field)
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("url must be an http:// or https:// URL with a host") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("url must be an http:// or https:// URL with a host")
    if parts.username or parts.password or parts.fragment:
        raise ValueError("url must not contain credentials or a fragment")
    try:
        _ = parts.port  # reading the port is what validates it
    except ValueError:
        raise ValueError("url has an invalid port") from None
    return parts


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


# IPv6 is judged by an allow-list, not by ``is_global`` alone: Python's tables lag the
# registries (3.11 calls NAT64, ``fec0::/10``, ``::a.b.c.d`` and ``3fff::/20`` global) and
# know nothing of an IPv4 destination carried inside an IPv6 address. Only global unicast
# (2000::/3) may be used, minus the parts of it that are not a host on the internet.
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_REFUSED_V6 = tuple(ipaddress.IPv6Network(n) for n in (
    "2001::/23",      # IETF protocol assignments: Teredo 2001::/32 (tunnels to an IPv4 host), benchmarking, ORCHID
    "2001:db8::/32",  # documentation
    "3fff::/20",      # documentation (RFC 9637)
))
# Forms that carry an IPv4 destination and are judged by it. The local-use NAT64 prefix
# 64:ff9b:1::/48, IPv4-compatible ::a.b.c.d and IPv4-translated ::ffff:0:a.b.c.d are not
# listed: they lie outside 2000::/3 and are refused whatever they carry.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix: DNS64 networks reach public IPv4 through it
# IPv4 blocks that Python's ``is_private`` (3.11) misses; ``is_global`` covers the rest.
_REFUSED_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "192.0.0.0/24",   # IETF protocol assignments
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
))


def _ipv4_allowed(addr: ipaddress.IPv4Address) -> bool:
    return addr.is_global and not addr.is_multicast and not any(addr in net for net in _REFUSED_V4)


def _ipv6_allowed(addr: ipaddress.IPv6Address) -> bool:
    if addr.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 host itself on a dual-stack socket
        return _ipv4_allowed(addr.ipv4_mapped)
    if addr in _NAT64:
        return _ipv4_allowed(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    if addr not in _GLOBAL_UNICAST or any(addr in net for net in _REFUSED_V6):
        return False
    if addr.sixtofour is not None:  # 2002:a.b.c.d::/48 is a tunnel to that IPv4 host
        # (judged by it alone: newer Pythons call all of 2002::/16 not global)
        return _ipv4_allowed(addr.sixtofour)
    return addr.is_global


def address_allowed(ip: str) -> bool:
    """True if a webhook may connect to ``ip``: a global unicast address that carries no
    refused IPv4 destination (mapped, NAT64 or 6to4)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv4Address):
        return _ipv4_allowed(addr)
    return _ipv6_allowed(addr)


RESOLVER_THREADS = 16  # distinct names being looked up at once, per process, for each of the two uses
# A registration looks up a name nobody has used yet, as many at once as a merchant sends
# requests: its look-ups wait for threads of their own, never in front of a delivery's.
_for_registration: ContextVar[bool] = ContextVar("webhook_lookup_for_registration", default=False)
_resolvers: dict[bool, tuple[int, ThreadPoolExecutor]] = {}  # (the process they were made in, the threads)
_lookups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SingleFlight[tuple[bool, str, int], list[str]]] = \
    weakref.WeakKeyDictionary()


@contextmanager
def registration_lookups() -> Iterator[None]:
    """The look-ups made inside are a registration's (on its threads)."""
    token = _for_registration.set(True)
    try:
        yield
    finally:
        _for_registration.reset(token)


def _resolver_threads(registration: bool) -> ThreadPoolExecutor:
    # Made at the first look-up, and again in a process forked after it (threads do not fork).
    made = _resolvers.get(registration)
    if made is None or made[0] != os.getpid():
        name = "webhook-dns-registration" if registration else "webhook-dns"
        made = _resolvers[registration] = (os.getpid(), ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix=name))
    return made[1]


async def _look_up(host: str, port: int, registration: bool) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.run_in_executor(_resolver_threads(registration),
                                       lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    return list(dict.fromkeys(str(info[4][0]) for info in infos))  # in order, without repeats


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address the host resolves to (tests replace this to simulate DNS)."""
    flights = _lookups.setdefault(asyncio.get_running_loop(), SingleFlight())
    registration = _for_registration.get()
    return await flights.run((registration, host, port), lambda: _look_up(host, port, registration))


async def check_destination(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses to connect to; AddressRefused if none may be used."""
    host = host.strip("[]")
    shown = host if len(host) <= 100 else host[:100] + "…"
    try:
        ips = await resolve_host(host, port)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"the host {shown} does not resolve") from exc
    if not ips:
        raise AddressRefused(f"the host {shown} does not resolve")
    if not allow_private and not all(address_allowed(ip) for ip in ips):
        # Never say which address: the answer would map the gateway's internal DNS for
        # whoever registers URLs (a merchant probing names one request at a time).
        raise AddressRefused(f"the host {shown} resolves to a loopback, private or link-local (not public) "
                             f"address; webhooks go to public addresses only, unless the operator sets "
                             f"{ALLOW_PRIVATE_VARIABLE}=1")
    return ips


class _TlsClosedWhenCancelled(httpcore.AsyncNetworkStream):
    """A connection whose TLS handshake, if cancelled, closes it. httpcore closes the socket
    when a handshake fails but not when it is cancelled — and the attempt's deadline
    (``asyncio.timeout``) cancels: every attempt at an endpoint whose handshake hangs left a
    socket open until the garbage collector found it."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            return await self._stream.start_tls(ssl_context, server_hostname, timeout)
        except asyncio.CancelledError:
            await self._stream.aclose()
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


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
                return _TlsClosedWhenCancelled(await self._inner.connect_tcp(
                    ip, port, timeout=timeout, local_address=local_address, socket_options=socket_options))
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("webhooks never go to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
