"""The console's load check over real HTTP (issue #20): the overview and the payment search
as an operator's browser asks for them, at 100,000 payments.

Seeds N payments into a fresh database (console_load.py's ``seed_as_after_a_day``), starts
a real ``paygate console`` process on it, signs an operator in, then asks each page RUNS
times in a row over one keep-alive connection (as a browser tab does) and prints a Markdown
table of p50/p99 in milliseconds — the whole request: HTTP, session check, the read,
the template. The search pages are measured when this checkout routes ``/payments`` (a
page that answers 404 is reported as not routed).

    PYTHONPATH=. .venv/bin/python docs/perf/console_http_load.py sqlite 100000
    PAYGATE_TEST_DATABASE_URL=postgresql://127.0.0.1:5432/test \\
      PYTHONPATH=. .venv/bin/python docs/perf/console_http_load.py postgresql 100000
"""
from __future__ import annotations

import asyncio
import html
import re
import sys
import time
from pathlib import Path

import httpx

from paygate_server.clock import now_us
from paygate_server.console.accounts import Accounts
from paygate_server.procs import ServiceProcess, console_command
from paygate_server.storage import create_database
from tests.server.console.conftest import CHEAP
from tests.support.console_login import login_token
from tests.support.console_seed import COMMON_LAST4, Seeded
from tests.support.processes import gateway_env

sys.path.insert(0, str(Path(__file__).parent))
from console_load import (  # noqa: E402  (a sibling script, not a package)
    backend_and_size,
    fresh_database,
    p50_p99,
    print_table,
    seed_as_after_a_day,
)

RUNS = 200
EMAIL, PASSWORD = "load@example.com", "a long load-test password"


async def _prepare(url: str, n: int) -> Seeded:
    db = create_database(url)
    try:
        seeded = await seed_as_after_a_day(db, n, now_us())
        await Accounts(db, CHEAP).create(EMAIL, "viewer", PASSWORD)
        return seeded
    finally:
        await db.dispose()


def _pages(http: httpx.Client, seeded: Seeded) -> dict[str, str]:
    rare = next(a["card_last4"] for a in seeded.attempts if a["card_last4"] != COMMON_LAST4)
    merchant = seeded.merchants[0]
    pages = {"overview page /": "/", "overview.json": "/overview.json"}
    if http.get("/payments").status_code == 404:
        print("/payments is not routed on this checkout: the search is not measured", file=sys.stderr)
        return pages
    searches = {"search, no filter, first page": "/payments",
                f"search, last 4 {COMMON_LAST4} (30 %)": f"/payments?last4={COMMON_LAST4}",
                "search, a rare last 4": f"/payments?last4={rare}",
                "search, by status succeeded": "/payments?status=succeeded",
                "search, by merchant": f"/payments?merchant={merchant}"}
    pages.update(searches)
    # A later page: follow "Older" from the first page, then from that one, a few times.
    later = "/payments"
    for _ in range(5):
        found = re.search(r'href="(/payments\?[^"]*after=[^"]*)"', http.get(later).text)
        if found is None:
            break
        later = html.unescape(found.group(1))
    pages["search, no filter, 6th page"] = later
    found = re.search(r'href="(/payments\?[^"]*after=[^"]*)"', http.get(searches[f"search, last 4 {COMMON_LAST4} (30 %)"]).text)
    if found:
        pages[f"search, last 4 {COMMON_LAST4}, 2nd page"] = html.unescape(found.group(1))
    return pages


def measure(base_url: str, seeded: Seeded) -> list[tuple[str, float, float]]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        token = login_token(http.get("/login").text)  # the login form's cookie and CSRF token
        signed = http.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf": token},
                           headers={"origin": base_url})
        assert signed.status_code == 303, signed.text[:300]
        results = []
        for name, path in _pages(http, seeded).items():
            first = http.get(path)  # warm: the plan, the pool, the template
            assert first.status_code == 200, (path, first.status_code)
            times = []
            for _ in range(RUNS):
                t = time.perf_counter()
                response = http.get(path)
                times.append((time.perf_counter() - t) * 1000)
                assert response.status_code == 200
            results.append((name, *p50_p99(times)))
        return results


def main() -> None:
    backend, n = backend_and_size("console_http_load.py")
    with fresh_database(backend) as (url, folder):
        seeded = asyncio.run(_prepare(url, n))
        with ServiceProcess(console_command, log_path=folder / "console.log",
                            env=gateway_env(url, folder)) as console:
            try:
                results = measure(console.base_url, seeded)
            except httpx.HTTPError:
                print(console.output()[-3000:], file=sys.stderr)  # what the console said
                raise
    print_table(f"page over HTTP ({backend}, {n:,} payments, {RUNS} requests)", results)


if __name__ == "__main__":
    main()
