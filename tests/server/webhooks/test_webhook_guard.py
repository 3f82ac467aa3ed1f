"""The private-address guard (SPEC §6, issue #15 item 5): one rule at registration and at
delivery, every IPv6 form that carries an IPv4 destination, and refusals that never say
what a name resolves to."""
from __future__ import annotations

from typing import Any

import pytest

from paygate_server.webhooks import guard
from tests.support.app import InProcessGateway

HOOKS = "/api/v1/webhooks"

REFUSED = [
    # IPv4
    "127.0.0.1", "127.1.2.3", "10.1.2.3", "172.16.5.5", "192.168.0.7", "169.254.169.254", "100.64.1.1",
    "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255", "192.0.0.8", "192.0.0.170", "192.0.2.1",
    "198.18.0.1", "198.51.100.7", "203.0.113.9", "240.0.0.1", "192.88.99.1",
    # IPv6 outside global unicast
    "::", "::1", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456:789a::1", "fec0::1", "fec0:1:2::3",
    "ff02::1", "ff0e::1", "100::1", "5f00::1",
    # IPv4-mapped, judged by the IPv4 it carries
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    # NAT64 well-known prefix, judged by the IPv4 it carries
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::c0a8:1",
    # local-use NAT64 (RFC 8215), IPv4-compatible and IPv4-translated: refused whatever they carry
    "64:ff9b:1::a00:1", "64:ff9b:1::808:808", "::127.0.0.1", "::10.0.0.1", "::8.8.8.8",
    "::ffff:0:127.0.0.1", "::ffff:0:10.0.0.1", "::ffff:0:8.8.8.8",
    # 6to4 carrying a refused IPv4, Teredo, and the non-host parts of 2000::/3
    "2002:7f00:1::1", "2002:a00:1::1", "2002:a9fe:a9fe::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:2::1", "2001:10::1", "2001:20::1", "2001:db8::1", "3fff::1",
]
ALLOWED = [
    "93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2001:4860:4860::8888",
    "2a00:1450:4001:80e::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
]


@pytest.mark.parametrize("ip", REFUSED)
def test_address_refused(ip: str) -> None:
    assert not guard.address_allowed(ip)


@pytest.mark.parametrize("ip", ALLOWED)
def test_address_allowed(ip: str) -> None:
    assert guard.address_allowed(ip)


def _fake_dns(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("unknown host")
        return table[host]

    monkeypatch.setattr(guard, "resolve_host", resolve)


class _RecordingBackend:
    """Stands in for the real connection: nothing may leave this machine in a test."""

    def __init__(self) -> None:
        self.connected: list[str] = []

    async def connect_tcp(self, host: str, port: int, **_: Any) -> str:
        self.connected.append(host)
        return f"stream to {host}"


async def _deliver_to(ip: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the delivery side does with a name that resolves to a public address and ``ip``."""
    _fake_dns(monkeypatch, {"hook.test": ["93.184.216.34", ip]})
    backend = guard.GuardedBackend(allow_private=False)
    inner = _RecordingBackend()
    backend._inner = inner  # type: ignore[assignment]
    await backend.connect_tcp("hook.test", 443)
    return inner.connected


@pytest.mark.parametrize("ip", REFUSED)
async def test_delivery_refuses_before_connecting(ip: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # One refused address among public ones is enough: the connection could pick it.
    with pytest.raises(guard.AddressRefused) as refused:
        await _deliver_to(ip, monkeypatch)
    assert ip.split("%")[0] not in str(refused.value) and "93.184.216.34" not in str(refused.value)


@pytest.mark.parametrize("ip", ALLOWED)
async def test_delivery_connects_to_the_checked_address(ip: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert await _deliver_to(ip, monkeypatch) == ["93.184.216.34"]


async def test_allow_private_lets_everything_through(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {"hook.test": REFUSED})
    assert await guard.check_destination("hook.test", 80, allow_private=True) == REFUSED


async def test_registration_applies_the_same_rule(gw: InProcessGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = await gw.new_merchant()
    names = {f"h{i}.hooks.test": ip for i, ip in enumerate(REFUSED + ALLOWED)}
    _fake_dns(monkeypatch, {name: [ip] for name, ip in names.items()})
    created = 0
    for name, ip in names.items():
        r = await shop.post(HOOKS, {"url": f"https://{name}/paygate"})
        if ip in ALLOWED:
            assert r.status_code == 201, (ip, r.text)
            created += 1
            await shop.request("DELETE", f"{HOOKS}/{r.json()['webhookEndpointId']}")  # stay under the cap
            continue
        assert r.status_code == 400, (ip, r.text)
        error = r.json()["error"]
        assert error["code"] == "parameter_invalid" and error["param"] == "url", ip
        # The merchant learns that the name is refused, never what it resolves to.
        assert ip.split("%")[0] not in error["message"] and name in error["message"], (ip, error)
        assert "PAYGATE_WEBHOOK_ALLOW_PRIVATE" in error["message"]
    assert created == len(ALLOWED)


async def test_registration_refuses_literals(gw: InProcessGateway) -> None:
    # Literals go through the real resolver (getaddrinfo answers a literal itself), numeric
    # IPv4 spellings included.
    shop = await gw.new_merchant()
    urls = [f"http://[{ip}]:8080/hook" for ip in REFUSED if ":" in ip and "%" not in ip]
    urls += ["http://2130706433/hook", "http://0x7f.1/hook", "http://127.1/hook", "http://0177.0.0.1/hook"]
    for url in urls:
        r = await shop.post(HOOKS, {"url": url})
        assert r.status_code == 400, (url, r.text)
        assert r.json()["error"]["param"] == "url", url


@pytest.mark.parametrize("url", ["http://[::1", "https://[fe80::1/hook", "https://]x[/"])
def test_a_url_urlsplit_refuses_is_refused_naming_the_field(url: str) -> None:
    # Once urlsplit's own "Invalid IPv6 URL" (the API's 400, the CLI's and the console's
    # line), which names no field.
    with pytest.raises(ValueError, match="^url must be an http:// or https:// URL with a host$"):
        guard.parse_webhook_url(url)
