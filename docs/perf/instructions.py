"""Instructions per complete payment, counted by valgrind's callgrind (repeatable: no clock).

Timings on a shared 2-core box move by ±20 % from run to run; instructions do not follow the
box's load, only the code and its inputs (which still differ a little from run to run: random
ids, keys and padding; measured repeats in docs/perf/history.md). This runs the gateway
in-process (tests/support/app.py, as docs/perf/count.py does, with a connector that approves
at once) under ``valgrind --tool=callgrind`` twice, serving N1 and then N2 complete payments
after the same start-up and warm-up, and prints (Ir(N2) − Ir(N1)) / (N2 − N1): the
instructions one more payment costs, start-up and imports cancelled out. The count includes
the in-process httpx client's work (the same in both trees of a before/after comparison) and
no kernel time (system calls count as the instructions that issue them).

What would follow the clock is kept off it: background tasks off (as in the tests), the
API-key and processor-route caches and the checkout keys' refresh at an hour, the change
notifier's poll at an hour (PostgreSQL's LISTEN still delivers). The database is reused
from run to run (the first, native, run makes the schema and the checkout key: an RSA key
generation costs a random number of instructions), so use one database per measurement.
The runs under valgrind have PYTHONHASHSEED=0 (the same dict and set layouts every run).

    PYTHONPATH=server:sdk:checkout:. .venv/bin/python docs/perf/instructions.py \\
        postgresql://127.0.0.1:5432/perf_ir [N1 N2]        # default 20 60
    TOKENIZE=1 ...   the SPEC §10 flow (create → tokenize → process → status), else --encrypted-card's

To compare two trees, run each tree's own copy of the gateway with this script (PYTHONPATH of
that tree, the script from either), on the same database URL, and alternate.
"""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

_HOUR = 3600.0


async def _serve(url: str, n: int) -> None:
    from payment_flow import Approve, pay  # this folder's (docs/perf/payment_flow.py)

    import paygate
    from paygate_server import app as app_module
    from tests.support.app import running_gateway, test_settings

    app_module.CARD_KEY_REFRESH_S = _HOUR  # read at each wait (app._refresh_card_keys)

    tokenize = os.environ.get("TOKENIZE", "0") == "1"
    with tempfile.TemporaryDirectory() as data:
        settings = test_settings(url, Path(data), key_cache_ttl_s=_HOUR, change_poll_interval_s=_HOUR)
        async with running_gateway(settings) as gw:
            gw.gateway.processing.connector = Approve()
            shop = await gw.new_merchant()
            jwks = gw.gateway.card_keys.jwks()
            jwes = [paygate.encrypt_card(jwks, number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
                    for _ in range(n + 5)]
            for i in range(n + 5):  # 5 of warm-up, then n
                await pay(gw, shop, jwes[i], f"k-{i}", tokenize=tokenize)


def _instructions(url: str, n: int) -> int:
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out",
             sys.executable, __file__, "--serve", url, str(n)],
            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"instructions.py: the run of {n} payments failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if sys.argv[1] == "--serve":
        asyncio.run(_serve(sys.argv[2], int(sys.argv[3])))
        return
    from tests.support.databases import migrate

    url = sys.argv[1]
    n1, n2 = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (20, 60)
    migrate(url)
    asyncio.run(_serve(url, 1))  # natively: the checkout key, made once
    low, high = _instructions(url, n1), _instructions(url, n2)
    flow = "tokenize" if os.environ.get("TOKENIZE", "0") == "1" else "encryptedCard"
    print(f"{url.split(':')[0]} {flow}: Ir({n1}) = {low:,}, Ir({n2}) = {high:,}, "
          f"per payment {(high - low) / (n2 - n1):,.0f}")


if __name__ == "__main__":
    main()
