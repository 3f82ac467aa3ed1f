"""Fixtures of the console's tests: the database handle, cheap Argon2 parameters, and the
console app in-process (httpx over ASGI, its real lifespan)."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from paygate_server.config import Settings
from paygate_server.console.accounts import Accounts
from paygate_server.console.app import create_console_app
from paygate_server.console.web import Console
from paygate_server.ids import random_token
from paygate_server.storage import Database
from tests.support.app import test_settings as make_settings
from tests.support.console_login import login_token
from tests.support.databases import opened_database

CHEAP = PasswordHasher.from_parameters(CHEAPEST)
PASSWORD = "correct horse battery"


def new_email(prefix: str = "op") -> str:
    return f"{prefix}-{random_token(6)}@example.com"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with opened_database(database_url) as database:
        yield database


@pytest.fixture
def accounts(db: Database) -> Accounts:
    return Accounts(db, CHEAP)


@dataclass
class InProcessConsole:
    console: Console
    http: httpx.AsyncClient
    origin: str

    async def operator(self, role: str, email: str | None = None) -> str:
        email = email or new_email(role)
        await self.console.accounts.create(email, role, PASSWORD)
        return email

    async def log_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        """As a browser does: the login page (its cookie and token), then the form."""
        return await self.http.post("/login", data={"email": email, "password": password,
                                                    "csrf": await self.login_token()},
                                    headers={"origin": self.origin})

    async def login_token(self) -> str:
        return login_token((await self.http.get("/login")).text)

    async def csrf(self) -> str:
        """The CSRF token of the signed-in session, as a page carries it."""
        page = await self.http.get("/activity")
        marker = 'name="csrf" value="'
        start = page.text.index(marker) + len(marker)
        return page.text[start:page.text.index('"', start)]


@contextlib.asynccontextmanager
async def running_console(settings: Settings, base_url: str = "http://127.0.0.1:8083") -> AsyncIterator[InProcessConsole]:
    app = create_console_app(settings)
    async with app.router.lifespan_context(app) as state:
        console: Console = state["console"]
        console.accounts = Accounts(console.gateway.db, CHEAP)

        async def with_state(scope, receive, send):  # type: ignore[no-untyped-def]
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield InProcessConsole(console, http, base_url)


@pytest.fixture
async def con(database_url: str, tmp_path: Path) -> AsyncIterator[InProcessConsole]:
    async with running_console(make_settings(database_url, tmp_path)) as c:
        yield c
