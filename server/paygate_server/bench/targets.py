"""What the bench runs against: a stack it spawns itself, or a gateway already running.

Either way only loopback addresses are ever targeted (a load test sends traffic to this
machine only). Merchants are made through the public CLI (``paygate merchants create
--json``) against the gateway's database, or read from a credentials file.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from paygate_server.procs import ServiceProcess, gateway_command, simulator_command

__all__ = ["Target", "TargetError", "create_merchants", "database_server_pids", "ensure_loopback",
           "load_credentials", "make_jwe_pool", "restore_faults", "set_processor_latency", "spawned_stack"]

MERCHANT_CLI_PARALLEL = 4


class TargetError(Exception):
    """A target the bench cannot or will not use (message for the operator)."""


@dataclass
class Target:
    gateway_url: str
    simulator_url: str | None
    merchants: list[dict[str, str]]
    gateway_pids: list[int] = field(default_factory=list)
    simulator_pids: list[int] = field(default_factory=list)
    database_pids: list[int] = field(default_factory=list)
    database: str | None = None
    workers: int | None = None


def ensure_loopback(url: str) -> tuple[str, int]:
    """(host, port) of an ``http://`` URL whose host is a loopback address; else refuse."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise TargetError(f"{url}: only http://<loopback address>:<port> targets are supported")
    host = parts.hostname
    port = parts.port or 80
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except socket.gaierror:
        raise TargetError(f"{url}: cannot resolve {host}") from None
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise TargetError(f"{url}: the bench only targets loopback addresses (127.0.0.0/8, ::1)")
    return host, port


MAX_CREDENTIALS_BYTES = 16 * 1024 * 1024  # 10,000 merchants' credentials are ~2 MB


def load_credentials(path: Path) -> list[dict[str, str]]:
    """One credentials object (``paygate merchants create --json``, or the demo's
    ``demo-merchant.json``) or a list of them, or one such object per line."""
    from paygate_server.cli import read_text_file

    text = read_text_file(str(path), limit=MAX_CREDENTIALS_BYTES, what="a credentials file")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    items = data if isinstance(data, list) else [data]
    creds = []
    for item in items:
        if not isinstance(item, dict) or not {"merchantId", "apiKey", "signingSecret"} <= item.keys():
            raise TargetError(f"{path}: expected objects with merchantId, apiKey and signingSecret")
        creds.append({k: str(item[k]) for k in ("merchantId", "apiKey", "signingSecret")})
    if not creds:
        raise TargetError(f"{path}: no credentials")
    return creds


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "paygate_server", *args]


def create_merchants(count: int, env: dict[str, str]) -> list[dict[str, str]]:
    """``paygate merchants create --json`` ``count`` times (a few at once) with ``env``
    (which must carry the gateway's PAYGATE_DATABASE_URL and master key)."""
    full_env = {**os.environ, **env}
    creds: list[dict[str, str]] = []
    for batch_start in range(0, count, MERCHANT_CLI_PARALLEL):
        procs = [subprocess.Popen(_cli("merchants", "create", "--name", f"Bench merchant {i + 1}",
                                       "--origin", "http://127.0.0.1:9", "--json"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
                 for i in range(batch_start, min(count, batch_start + MERCHANT_CLI_PARALLEL))]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise TargetError(f"paygate merchants create failed: {err.decode(errors='replace').strip()}")
            creds.append(json.loads(out))
    return creds


def _migrate(env: dict[str, str]) -> None:
    done = subprocess.run(_cli("db", "upgrade"), env={**os.environ, **env}, capture_output=True, timeout=300,
                          check=False)
    if done.returncode != 0:
        raise TargetError(f"paygate db upgrade failed: {done.stderr.decode(errors='replace').strip()}")


def database_server_pids(url: str | None) -> list[int]:
    """The PostgreSQL server's listening process, when the database is on this machine."""
    from paygate_server.bench.cpu import pids_listening_on
    from paygate_server.storage.urls import server_address

    address = server_address(url) if url else None
    if address is None:
        return []
    host, port = address
    try:
        ensure_loopback(f"http://{host}:{port}")
    except TargetError:
        return []
    return pids_listening_on(port)


@contextlib.contextmanager
def spawned_stack(*, database_url: str | None, workers: int, merchants: int,
                  data_dir: Path | None, extra_env: dict[str, str] | None = None) -> Iterator[Target]:
    """Simulator + gateway (``--workers N``) on loopback ports the OS picks; a fresh SQLite
    database in a temporary folder unless ``database_url`` is given (it is migrated)."""
    from paygate_server.storage.urls import database_kind

    owned = data_dir is None
    folder = Path(tempfile.mkdtemp(prefix="paygate-bench-")) if data_dir is None else data_dir
    folder.mkdir(parents=True, exist_ok=True)
    url = database_url or f"sqlite:///{(folder / 'paygate.db').resolve()}"
    simulator = ServiceProcess(lambda fd: simulator_command(fd, folder / "simulator.db"),
                               log_path=folder / "simulator.log")
    env = {
        "PAYGATE_DATABASE_URL": url,
        "PAYGATE_DATA_DIR": str(folder),
        # The operator's key when set: a --database-url used before is sealed under it (any
        # other key is refused, docs/operations.md "The master key"); else one for this run.
        "PAYGATE_MASTER_KEY": os.environ.get("PAYGATE_MASTER_KEY") or os.urandom(32).hex(),
        "PAYGATE_PROCESSOR_URL": simulator.base_url,
        **(extra_env or {}),
    }
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in env:
        # Several workers share one /metrics view only in prometheus_client's multiprocess mode.
        prom = folder / "prometheus"
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    gateway = ServiceProcess(lambda fd: gateway_command(fd, workers=workers),
                             log_path=folder / "gateway.log", env=env, startup_timeout_s=60.0)
    try:
        _migrate(env)
        creds = create_merchants(merchants, env)
        simulator.start()
        gateway.start()
        assert gateway.pid is not None and simulator.pid is not None
        yield Target(gateway_url=gateway.base_url, simulator_url=simulator.base_url, merchants=creds,
                     gateway_pids=[gateway.pid], simulator_pids=[simulator.pid],
                     database_pids=database_server_pids(url),
                     database=database_kind(url), workers=workers)
    finally:
        gateway.close()
        simulator.close()
        if owned:
            shutil.rmtree(folder, ignore_errors=True)


def set_processor_latency(simulator_url: str, latency_ms: int, jitter_ms: int) -> dict[str, Any] | None:
    """Set the simulator's latency (``POST /v1/_faults``); returns the previous faults."""
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        previous = client.get(f"{simulator_url}/v1/_faults")
        before = previous.json() if previous.status_code == 200 else None
        body = dict(before or {})
        body.update(latencyMs=latency_ms, jitterMs=jitter_ms)
        client.post(f"{simulator_url}/v1/_faults", json=body).raise_for_status()
    return before if isinstance(before, dict) else None


def restore_faults(simulator_url: str, previous: dict[str, Any] | None) -> None:
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        if previous:
            client.post(f"{simulator_url}/v1/_faults", json=previous)
        else:
            client.delete(f"{simulator_url}/v1/_faults")


def make_jwe_pool(gateway_url: str, cards: list[str], size: int) -> list[str]:
    """``size`` encryptedCard JWEs (the SDK's ``encrypt_card``), made before the run so RSA
    encryption stays out of the measurement. A JWE may be replayed by design for 24 h
    (its ``generationTime`` window), so a pool reused round-robin is a fair stand-in."""
    import time

    from paygate import encrypt_card

    with httpx.Client(timeout=10.0, trust_env=False) as client:
        response = client.get(f"{gateway_url}/checkout/v1/keys")
        response.raise_for_status()
        jwks = response.json()
    year = time.gmtime().tm_year + 3
    return [encrypt_card(jwks, number=cards[i % len(cards)], exp_month=12, exp_year=year, cvc="123")
            for i in range(size)]
