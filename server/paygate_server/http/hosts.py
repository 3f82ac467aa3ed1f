"""What a request's ``Host`` says about DNS rebinding.

A hostile page can make its own host name resolve to 127.0.0.1 (or any address on the
victim's network): the victim's browser then sends it requests addressed to the attacker's
name — ``Host: evil.example:8083`` — that reach a server listening on loopback, and lets
the page read the answers (same origin, as far as the browser knows). The name in ``Host``
is the browser's: the page cannot change it. So a server that answers only the names it
knows is out of reach, and some names are safe without being configured:

* an IP literal (``127.0.0.1``, ``[::1]``, ``10.0.0.5``): no DNS is involved, the origin
  *is* the address, and another site's page cannot claim it;
* ``localhost``: browsers resolve it to loopback themselves (RFC 6761), never through DNS.

Everything else — a DNS name — is the deployment's to declare.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["HostName", "host_names_in", "parse_host", "safe_without_configuration"]

# ``name[:port]`` (RFC 9110 §7.2): a bracketed IPv6 literal or a name with no colon or
# bracket, then at most one port of digits. Anything else — userinfo, a path, spaces, two
# ports, stray brackets — is refused as unreadable rather than guessed at.
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[^\[\]:@/\\?#\s\x00-\x1f\x7f]+)(?::(?P<port>[0-9]{1,5}))?")


@dataclass(frozen=True, slots=True)
class HostName:
    """A ``Host`` value read: the name, lower-cased, IPv6 without brackets; the port if given."""
    name: str
    port: int | None


def parse_host(value: str | None) -> HostName | None:
    """The name and port of a ``Host`` value; None if missing or not ``name[:port]``."""
    match = _HOST.fullmatch(value) if value and len(value) <= 300 else None
    if match is None:
        return None
    name, port = match["name"].lower(), int(match["port"]) if match["port"] else None
    if name.startswith("["):
        name = name[1:-1]
        if not isinstance(_ip(name), ipaddress.IPv6Address):
            return None
    if port is not None and port > 65535:
        return None
    return HostName(name, port)


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _is_ip_literal(name: str) -> bool:
    return _ip(name) is not None


def safe_without_configuration(host: HostName) -> bool:
    """An IP literal or ``localhost``: a name no other site's page can make a browser use."""
    return host.name == "localhost" or _is_ip_literal(host.name)


def host_names_in(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every ``Host`` field of an ASGI scope's headers (more than one is a malformed request)."""
    return [value.decode("latin-1") for name, value in headers if name == b"host"]
