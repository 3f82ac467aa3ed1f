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
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["HostName", "host_names_in", "parse_host", "safe_without_configuration"]

# Characters a Host field cannot hold (userinfo, path, query, fragment, spaces, controls):
# such a value is refused as unreadable rather than guessed at.
_FORBIDDEN = frozenset("@/\\?# \t\r\n\x00")


@dataclass(frozen=True, slots=True)
class HostName:
    """A ``Host`` value read: the name, lower-cased, IPv6 without brackets; the port if given."""
    name: str
    port: int | None


def parse_host(value: str | None) -> HostName | None:
    """The name and port of a ``Host`` value; None if missing or not ``name[:port]``."""
    if not value or len(value) > 300 or any(ch in _FORBIDDEN for ch in value):
        return None
    try:
        parts = urlsplit("//" + value)
        name, port = parts.hostname, parts.port  # .port raises ValueError on a bad port
    except ValueError:
        return None
    if not name or value.endswith(":"):
        return None
    return HostName(name, port)


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def safe_without_configuration(host: HostName) -> bool:
    """An IP literal or ``localhost``: a name no other site's page can make a browser use."""
    return host.name == "localhost" or _is_ip_literal(host.name)


def host_names_in(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Every ``Host`` field of an ASGI scope's headers (more than one is a malformed request)."""
    return [value.decode("latin-1") for name, value in headers if name == b"host"]
