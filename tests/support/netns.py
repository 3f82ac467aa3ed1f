"""Hosts for multi-host tests: network namespaces made by the test, each joined to this
(the root) namespace by a veth pair, removed again however the test ends.

Host ``n`` gets the /30 ``10.<net>.<n>.0``: ``.1`` is the root side (where the test's
proxies listen for the host's PostgreSQL, NATS and processor), ``.2`` the host's own
address (where its gateway listens). ``<net>`` is random per run in 10.200–10.249, and the
addresses exist only on the test's veth ends. Needs ``ip`` and the right to make
namespaces (root, or CAP_NET_ADMIN); :class:`Unavailable` says why not.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from typing import Self

__all__ = ["Host", "Hosts", "Unavailable"]


class Unavailable(RuntimeError):
    """Namespaces cannot be made here (the message says why)."""


@dataclass(frozen=True)
class Host:
    name: str       # the namespace
    index: int
    address: str    # the host's own address (inside its namespace)
    gateway_side: str  # the root namespace's end of its link: what the host reaches us at

    def exec_prefix(self) -> list[str]:
        """Run a command inside the host."""
        return ["ip", "netns", "exec", self.name]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Hosts:
    def __init__(self, count: int) -> None:
        if shutil.which("ip") is None:
            raise Unavailable("no `ip` command (iproute2)")
        if os.geteuid() != 0:
            raise Unavailable("making network namespaces needs root (CI runs as root)")
        tag = uuid.uuid4().hex[:5]
        net = random.randint(200, 249)  # noqa: S311 - an address block, not a secret
        self.hosts = [Host(f"pgw{tag}{n}", n, f"10.{net}.{n}.2", f"10.{net}.{n}.1") for n in range(1, count + 1)]
        self._tag = tag
        self._made: list[Host] = []

    def _veth(self, host: Host) -> tuple[str, str]:
        return f"vr{self._tag}{host.index}", f"vh{self._tag}{host.index}"  # root side, host side (<16 chars)

    def __enter__(self) -> Self:
        try:
            for host in self.hosts:
                self._make(host)
        except BaseException:
            self.close()
            raise
        return self

    def _make(self, host: Host) -> None:
        try:
            _ip("netns", "add", host.name)
        except RuntimeError as exc:
            raise Unavailable(f"cannot make a network namespace here: {exc}") from None
        self._made.append(host)
        root_end, host_end = self._veth(host)
        _ip("link", "add", root_end, "type", "veth", "peer", "name", host_end)
        _ip("link", "set", host_end, "netns", host.name)
        _ip("addr", "add", f"{host.gateway_side}/30", "dev", root_end)
        _ip("link", "set", root_end, "up")
        _ip("-n", host.name, "addr", "add", f"{host.address}/30", "dev", host_end)
        _ip("-n", host.name, "link", "set", host_end, "up")
        _ip("-n", host.name, "link", "set", "lo", "up")

    def close(self) -> None:
        for host in self._made:
            root_end, _ = self._veth(host)
            # Deleting the namespace deletes its veth end, and the pair with it.
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, timeout=30)
            subprocess.run(["ip", "link", "del", root_end], capture_output=True, timeout=30)
        self._made.clear()

    def __exit__(self, *exc: object) -> None:
        self.close()
