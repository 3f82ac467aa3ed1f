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
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from paygate_server.clock import now_us
from paygate_server.console.accounts import Accounts
from paygate_server.procs import ServiceProcess, console_command
from paygate_server.storage import create_database
from tests.server.console.conftest import CHEAP
from tests.support.console_seed import COMMON_LAST4, Seeded
from tests.support.databases import drop_database, migrate, new_database_url
from tests.support.processes import gateway_env

sys.path.insert(0, str(Path(__file__).parent))
from console_load import seed_as_after_a_day  # noqa: E402  (a sibling script, not a package)

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
        signed = http.post("/login", data={"email": EMAIL, "password": PASSWORD}, headers={"origin": base_url})
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
            times.sort()
            results.append((name, statistics.median(times), times[int(len(times) * 0.99) - 1]))
        return results


def main() -> None:
    backends = ("sqlite", "postgresql")
    if len(sys.argv) != 3 or sys.argv[1] not in backends or not sys.argv[2].isdigit():
        print("usage: console_http_load.py sqlite|postgresql N", file=sys.stderr)
        sys.exit(2)
    backend, n = sys.argv[1], int(sys.argv[2])
    with tempfile.TemporaryDirectory() as folder:
        url = new_database_url(backend, Path(folder))
        try:
            migrate(url)
            seeded = asyncio.run(_prepare(url, n))
            with ServiceProcess(console_command, log_path=Path(folder) / "console.log",
                                env=gateway_env(url, Path(folder))) as console:
                try:
                    results = measure(console.base_url, seeded)
                except httpx.HTTPError:
                    print(console.output()[-3000:], file=sys.stderr)  # what the console said
                    raise
        finally:
            drop_database(url)
    print(f"| page over HTTP ({backend}, {n:,} payments, {RUNS} requests) | p50 ms | p99 ms |\n|---|---|---|")
    for name, p50, p99 in results:
        print(f"| {name} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
