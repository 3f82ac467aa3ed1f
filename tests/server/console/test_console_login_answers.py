"""What a refused login tells, through a real ``paygate console`` process over real HTTP
(its real Argon2 parameters): a wrong password for an account, an unknown email, a disabled
account and a locked one (even with the right password) get the same status, the same
headers and the same page but for the email typed back into the form — nothing says
whether the account exists, is disabled or is locked. The timing is measured, not tested
here: docs/operations.md, Console, "What the lock is"."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from paygate_server.console.accounts import LOCKOUT_FAILURES, Accounts
from paygate_server.storage import create_database
from tests.server.console.conftest import CHEAP, PASSWORD, new_email
from tests.server.console.test_console_hosts import RunningConsole, _start
from tests.support.console_login import login_token

# Headers that differ between any two answers whatever they say.
_PER_ANSWER = {"date", "x-request-id", "content-length"}


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningConsole]:
    yield from _start(tmp_path_factory)


def _disable(console: RunningConsole, email: str) -> None:
    async def run() -> None:
        db = create_database(console.database_url)
        try:
            await Accounts(db, CHEAP).disable(email)
        finally:
            await db.dispose()
    asyncio.run(run())


def test_every_refusal_answers_alike(console: RunningConsole) -> None:
    wrong, disabled, locked = console.operator(), console.operator(), console.operator()
    _disable(console, disabled)
    with httpx.Client(base_url=console.url, headers={"origin": console.url}, timeout=30) as http:
        token = login_token(http.get("/login").text)  # one browser: its login cookie and form

        def log_in(email: str, password: str) -> httpx.Response:
            return http.post("/login", data={"email": email, "password": password, "csrf": token})

        for _ in range(LOCKOUT_FAILURES):
            assert log_in(locked, "not the password").status_code == 401
        answers = {
            "wrong password": (wrong, log_in(wrong, "not the password")),
            "unknown email": ((unknown := new_email()), log_in(unknown, PASSWORD)),
            "disabled": (disabled, log_in(disabled, PASSWORD)),
            "locked, right password": (locked, log_in(locked, PASSWORD)),
        }
    shapes = {}
    for case, (email, response) in answers.items():
        assert email in response.text, case  # typed back into the form, escaped
        headers = sorted((k, v) for k, v in response.headers.items() if k not in _PER_ANSWER)
        shapes[case] = (response.status_code, headers, response.text.replace(email, "EMAIL"))
    first = shapes["wrong password"]
    assert first[0] == 401 and "set-cookie" not in dict(first[1])
    for case, shape in shapes.items():
        assert shape == first, case
