"""The gateway app in-process (httpx ASGITransport), with its real lifespan."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from paygate_server.app import EXTENSIONS, create_app
from paygate_server.config import Settings
from paygate_server.extensions import Extension
from paygate_server.merchants import create_merchant
from paygate_server.state import Gateway
from tests.support.signing import Credentials, SignedClient

__all__ = ["InProcessGateway", "running_gateway", "test_settings", "use_cli_env"]

TEST_MASTER_KEY = "00" * 32


def test_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    base = Settings(data_dir=data_dir, database_url=database_url, master_key=TEST_MASTER_KEY,
                    key_cache_ttl_s=0.0, run_background=False)
    return replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class InProcessGateway:
    gateway: Gateway
    http: httpx.AsyncClient
    asgi: Any = None  # the app with its lifespan state, for clients of other addresses

    def client_from(self, host: str) -> httpx.AsyncClient:
        """A client whose requests reach the app from ``host`` (the ASGI scope's client)."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.asgi, client=(host, 40000)),
                                 base_url="http://gateway.test")

    async def new_merchant(self, name: str = "Test Shop", origins: list[str] | None = None) -> SignedClient:
        async with self.gateway.db.write() as conn:
            pair = await create_merchant(conn, self.gateway.master_key, name=name,
                                         origins=origins or ["http://127.0.0.1:9"])
        return SignedClient(self.http, Credentials(pair.merchant_id, pair.api_key, pair.signing_secret))


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings,
                          extensions: Sequence[Extension] = EXTENSIONS) -> AsyncIterator[InProcessGateway]:
    """The gateway in this process, with its lifespan (``extensions``: the app's by default)."""
    app = create_app(settings, extensions=extensions)
    async with app.router.lifespan_context(app) as state:
        async def with_state(scope, receive, send):  # type: ignore[no-untyped-def]
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield InProcessGateway(state["gateway"], http, with_state)


def use_cli_env(monkeypatch: Any, database_url: str, data_dir: Path) -> str:
    """The environment a ``paygate`` command run in this process reads: the database, a data
    folder and the tests' master key (through ``monkeypatch``, undone after the test)."""
    for name, value in {"PAYGATE_DATABASE_URL": database_url, "PAYGATE_DATA_DIR": str(data_dir),
                        "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}.items():
        monkeypatch.setenv(name, value)
    return database_url
