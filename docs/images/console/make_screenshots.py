"""Screenshots of the operator console for docs/operations.md, from real processes.

Starts the processor simulator, the gateway and the console on a new SQLite database, makes
real payments through the gateway (approved, declined, a refund, a manual capture), adds a
few hundred seeded payments over the last hour and month (tests/support/console_seed.py:
unknown outcomes among them, for the reconciliation queue), signs an admin in with real
Chromium and saves each page at 1280×800 and at 390×844 into this directory (the overview as a whole
page, its charts run below the fold):

    PYTHONPATH=. .venv/bin/python docs/images/console/make_screenshots.py

Pages that are not routed on this checkout (a 404) are skipped, and said so.
"""
from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import paygate
from paygate_server.console.accounts import Accounts
from paygate_server.procs import ServiceProcess, console_command
from paygate_server.storage import create_database
from tests.browser.conftest import launch_browser
from tests.e2e.conftest import running_stack
from tests.server.console.conftest import CHEAP
from tests.support.console_seed import seed_payments
from tests.support.databases import migrate, new_database_url
from tests.support.processes import gateway_env, make_merchant

HERE = Path(__file__).parent
EMAIL, PASSWORD = "ops@example.com", "a long demo password"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


async def _prepare(url: str) -> None:
    db = create_database(url)
    try:
        await seed_payments(db, 400, merchants=3)
        await Accounts(db, CHEAP).create(EMAIL, "admin", PASSWORD)
    finally:
        await db.dispose()


def _payments(url: str, gateway_url: str) -> str:
    """Real payments through the gateway; returns one intent's id (for its page)."""
    creds = make_merchant(url, "Demo Mug Shop", ["http://localhost:8082"])
    cards = ["4242424242424242"] * 9 + ["4000000000009995"] * 2 + ["5555555555554444"] * 3
    shown = ""
    with paygate.Client(creds.api_key, creds.signing_secret, gateway_url) as client:
        for n, number in enumerate(cards):
            intent = client.payment_intents.create(amount=1250 + 100 * n, currency="EUR",
                                                   product_details={"sku": f"mug-{n}"})
            card = client.encrypt_card(number=number, exp_month=12, exp_year=2034, cvc="123")
            done = client.payment_intents.process(intent.id, encrypted_card=card)
            if n == 0:
                client.refunds.create(intent.id, amount=500, reason="requested_by_customer")
                shown = done.id
        held = client.payment_intents.create(amount=4200, currency="EUR", product_details={"sku": "crate"},
                                             capture_method="manual")
        card = client.encrypt_card(number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
        client.payment_intents.process(held.id, encrypted_card=card)
    return shown


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="console-shots-") as tmp:
        data_dir = Path(tmp)
        url = new_database_url("sqlite", data_dir)
        migrate(url)
        asyncio.run(_prepare(url))
        with running_stack(url, data_dir / "stack") as stack, \
                ServiceProcess(console_command, log_path=data_dir / "console.log",
                               env=gateway_env(url, data_dir)) as console:
            intent_id = _payments(url, stack.gateway.base_url)
            merchant_id = _first_merchant(url)
            pages = {"overview": "/", "payments": "/payments", "payment": f"/payments/{intent_id}",
                     "reconciliation": "/reconciliation", "merchants": "/merchants",
                     "merchant": f"/merchants/{merchant_id}"}
            for browser in launch_browser():
                for size, (width, height) in SIZES.items():
                    context = browser.new_context(viewport={"width": width, "height": height})
                    page = context.new_page()
                    page.goto(console.base_url + "/login")
                    page.get_by_label("Email").fill(EMAIL)
                    page.get_by_label("Password").fill(PASSWORD)
                    page.get_by_role("button", name="Log in").click()
                    page.wait_for_url(console.base_url + "/")
                    for name, path in pages.items():
                        response = page.goto(console.base_url + path)
                        if response is None or response.status == 404:
                            print(f"skipped {name}: {path} is not routed on this checkout")
                            continue
                        if name == "overview":
                            page.wait_for_function("window.paygateOverview && window.paygateOverview.fetches >= 1")
                        target = HERE / f"{name}-{size}.png"
                        # The overview whole (its charts run below the fold); the others as seen.
                        page.screenshot(path=str(target), full_page=name == "overview")
                        print(f"wrote {target.relative_to(HERE.parent.parent.parent)}")
                    context.close()
    return 0


def _first_merchant(url: str) -> str:
    from paygate_server.storage.merchants import list_merchants

    async def run() -> str:
        db = create_database(url)
        try:
            async with db.read() as conn:
                return str((await list_merchants(conn, limit=1))[0]["id"])
        finally:
            await db.dispose()
    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
