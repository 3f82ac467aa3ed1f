"""The console's merchants pages over HTTP (httpx → ASGI, the real lifespan), SQLite and
PostgreSQL: create a merchant and keys (the secret shown once, and it works: the gateway's
own key loader opens it), revoke, origins, webhook endpoints, a failed delivery replayed,
processor accounts and rules shown, every change recorded, roles, and hostile forms."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from paygate_checkout import is_valid_origin
from paygate_server.console.actions import recent_actions
from paygate_server.merchants import create_merchant, load_api_key
from paygate_server.processors.accounts import add_account, set_routing
from paygate_server.storage.merchants import list_merchants, list_origins
from paygate_server.storage.schema_history import (
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)
from paygate_server.storage.webhook_deliveries import DeliveryQueue
from tests.server.console.conftest import InProcessConsole, running_console
from tests.support.app import test_settings as make_settings

SECRET = re.compile(r'<code class="secret">(sk_test_[A-Za-z0-9_-]+)</code>')
ENDPOINT_SECRET = re.compile(r'<code class="secret">([^<]+)</code>')


async def signed_in(con: InProcessConsole, role: str) -> None:
    assert (await con.log_in(await con.operator(role))).status_code == 303


async def post(con: InProcessConsole, path: str, **data: str):  # type: ignore[no-untyped-def]
    return await con.http.post(path, headers={"origin": con.origin}, data={"csrf": await con.csrf(), **data})


async def test_create_a_merchant_and_keys_the_secret_shown_once(con: InProcessConsole) -> None:
    await signed_in(con, "admin")
    empty = await con.http.get("/merchants")
    assert "Create merchant" in empty.text
    created = await post(con, "/merchants", name="Mug Shop", origins="https://mugs.example  http://localhost:8080")
    assert created.status_code == 200 and "Mug Shop" in created.text
    [secret] = SECRET.findall(created.text)
    merchant_id = re.search(r"(mer_[A-Za-z0-9]+)", created.text).group(1)  # type: ignore[union-attr]
    [api_key] = re.findall(r"API key (pk_test_[A-Za-z0-9_-]+)", created.text)[:1]
    async with con.console.gateway.db.read() as conn:
        stored = await load_api_key(conn, con.console.gateway.master_key, api_key)
    assert stored is not None and stored.secret == secret and stored.merchant_id == merchant_id
    page = await con.http.get(f"/merchants/{merchant_id}")
    assert secret not in page.text and api_key in page.text  # never again
    assert "https://mugs.example" in page.text and "http://localhost:8080" in page.text
    assert merchant_id in (await con.http.get("/merchants")).text

    second = await post(con, f"/merchants/{merchant_id}/keys")
    [second_secret] = SECRET.findall(second.text)
    assert second_secret != secret and second_secret not in (await con.http.get(f"/merchants/{merchant_id}")).text
    revoked = await post(con, f"/merchants/{merchant_id}/keys/revoke", api_key=api_key)
    assert revoked.status_code == 200 and "Revoked" in revoked.text
    async with con.console.gateway.db.read() as conn:
        assert (await load_api_key(conn, con.console.gateway.master_key, api_key)).revoked  # type: ignore[union-attr]
    again = await post(con, f"/merchants/{merchant_id}/keys/revoke", api_key=api_key)
    assert again.status_code == 400 and "no active key" in again.text
    added = await post(con, f"/merchants/{merchant_id}/origins", origins="https://shop2.example")
    assert "https://shop2.example" in added.text

    actions = await recent_actions(con.console.gateway.db, limit=20, target=merchant_id)
    assert [a.action for a in reversed(actions)] == ["merchant.create", "api_key.create", "api_key.revoke",
                                                     "merchant.origins_add"]
    for action in actions:  # the record names keys, never their secrets
        assert secret not in (action.detail or "") and second_secret not in (action.detail or "")


async def test_webhook_endpoint_secret_once_and_a_failed_delivery_replayed(database_url: str, tmp_path: Path) -> None:
    # Private addresses allowed (as a test gateway would be set): this sandbox resolves no
    # public name; the guard's refusal is in the hostile forms' test.
    async with running_console(make_settings(database_url, tmp_path, webhook_allow_private=True)) as con:
        await _endpoint_and_replay(con)


async def _endpoint_and_replay(con: InProcessConsole) -> None:
    await signed_in(con, "admin")
    gateway = con.console.gateway
    async with gateway.db.write() as conn:
        pair = await create_merchant(conn, gateway.master_key, name="Hooks", origins=[])
    bad = await post(con, f"/merchants/{pair.merchant_id}/webhooks", url="not a url")
    assert bad.status_code == 400 and "Not created" in bad.text
    made = await post(con, f"/merchants/{pair.merchant_id}/webhooks", url="http://127.0.0.1:9/paygate")
    assert made.status_code == 200, made.text
    [secret] = ENDPOINT_SECRET.findall(made.text)
    endpoint_id = re.search(r"Created webhook endpoint (we_[A-Za-z0-9]+)", made.text).group(1)  # type: ignore[union-attr]
    assert secret not in (await con.http.get(f"/merchants/{pair.merchant_id}")).text

    # A failed delivery (as the dispatcher leaves one), then the operator's replay.
    async with gateway.db.write() as conn:
        await conn.execute(insert(webhook_events).values(
            id="evt_consoletest1", merchant_id=pair.merchant_id, type="payment_intent.succeeded", change_id=-1,
            intent_id="pi_consoletest1", object_id="pi_consoletest1", payload="{}", created_at=1))
        await conn.execute(insert(webhook_deliveries).values(
            event_id="evt_consoletest1", endpoint_id=endpoint_id, merchant_id=pair.merchant_id, status="failed",
            attempts=8, next_attempt_at=0, last_status_code=500, last_error="HTTP 500", created_at=1, updated_at=2))
    page = await con.http.get(f"/merchants/{pair.merchant_id}")
    assert "evt_consoletest1" in page.text and ">Replay</button>" in page.text
    replayed = await post(con, f"/merchants/{pair.merchant_id}/deliveries/replay", event_id="evt_consoletest1",
                          endpoint_id=endpoint_id)
    assert replayed.status_code == 200 and "will be delivered again" in replayed.text
    [row] = await DeliveryQueue(gateway.db).recent(merchant_id=pair.merchant_id)
    assert row["status"] == "pending" and row["attempts"] == 0
    twice = await post(con, f"/merchants/{pair.merchant_id}/deliveries/replay", event_id="evt_consoletest1",
                       endpoint_id=endpoint_id)
    assert "nothing to replay" in twice.text
    # Both recorded, with what came of them (newest first).
    second, first = await recent_actions(gateway.db, limit=5, target="evt_consoletest1")
    assert first.action == second.action == "webhook.replay"
    assert '"replayed"' in (first.detail or "") and "nothing to replay" in (second.detail or "")

    # The endpoint disabled by a 410 (as the dispatcher leaves it): refused, not re-enabled.
    async with gateway.db.write() as conn:
        await conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).values(
            status="disabled", disabled_reason="the endpoint answered 410 Gone"))
        await conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.event_id == "evt_consoletest1")
                           .values(status="failed", last_status_code=410))
    refused = await post(con, f"/merchants/{pair.merchant_id}/deliveries/replay", event_id="evt_consoletest1",
                         endpoint_id=endpoint_id)
    assert refused.status_code == 409 and "is disabled" in refused.text, refused.text
    assert f"paygate webhooks replay --endpoint {endpoint_id}" in refused.text
    assert await DeliveryQueue(gateway.db).endpoint_state(endpoint_id) == ("disabled", "the endpoint answered 410 Gone")
    [row] = await DeliveryQueue(gateway.db).recent(merchant_id=pair.merchant_id)
    assert row["status"] == "failed"
    [third, *_] = await recent_actions(gateway.db, limit=5, target="evt_consoletest1")
    assert "refused: endpoint not enabled" in (third.detail or "")


async def test_processor_accounts_and_rules_are_shown_never_credentials(con: InProcessConsole) -> None:
    await signed_in(con, "viewer")
    gateway = con.console.gateway
    async with gateway.db.write() as conn:
        pair = await create_merchant(conn, gateway.master_key, name="Routed", origins=[])
    account = await add_account(gateway.db, gateway.master_key, merchant_id=pair.merchant_id, kind="simulator",
                                name="main sim", settings={"url": "http://127.0.0.1:9"}, credentials={})
    await set_routing(gateway.db, merchant_id=pair.merchant_id, document=[{"when": {"currency": ["EUR"]}, "use": [account.id]}, {"use": [account.id]}])
    page = await con.http.get(f"/merchants/{pair.merchant_id}")
    assert page.status_code == 200 and account.id in page.text and "main sim" in page.text
    assert f"currency EUR -&gt; {account.id}" in page.text
    assert "paygate processors remove" in page.text and "paygate routing set" in page.text
    # A viewer sees, and has no control.
    for control in ("Create an API key", "Add endpoint", "Allow origins", ">Revoke<"):
        assert control not in page.text
    refused = await post(con, f"/merchants/{pair.merchant_id}/keys")
    assert refused.status_code == 403
    assert "Create merchant" not in (await con.http.get("/merchants")).text
    assert (await post(con, "/merchants", name="Nope")).status_code == 403


@pytest.mark.parametrize(("path", "form", "status", "says"), [
    ("/merchants", {"name": ""}, 400, "1 to 200 characters"),
    ("/merchants", {"name": "x" * 250}, 400, "1 to 200 characters"),
    ("/merchants", {"name": "Shop", "origins": "javascript:alert(1)"}, 400, "origin must look like"),
    ("/merchants", {"name": "Shop", "origins": "https://a.example/path"}, 400, "no path"),
    # urlsplit raises on an unclosed or non-IP bracketed host: once a 500, no merchant created
    ("/merchants", {"name": "Shop", "origins": "http://[::1"}, 400, "origin must look like"),
    ("/merchants/{m}/origins", {"origins": "https://[shop.example]"}, 400, "origin must look like"),
    ("/merchants/mer_nosuchmerchant/keys", {}, 404, "no such merchant"),
    ("/merchants/<script>/keys", {}, 404, "no such merchant"),
    ("/merchants/{m}/keys/revoke", {"api_key": "'; drop table api_keys"}, 400, "use the button"),
    ("/merchants/{m}/deliveries/replay", {"event_id": "x", "endpoint_id": "y"}, 400, "use the button"),
    ("/merchants/{m}/origins", {"origins": ""}, 400, "Enter an origin"),
    ("/merchants/{m}/webhooks", {"url": "h" * 5000}, 400, "characters"),
    ("/merchants/{m}/webhooks", {"url": "http://127.0.0.1:9/hook"}, 400, "Not created"),  # private address
])
async def test_hostile_forms_get_readable_refusals(con: InProcessConsole, path: str, form: dict[str, str],
                                                   status: int, says: str) -> None:
    await signed_in(con, "admin")
    gateway = con.console.gateway
    async with gateway.db.write() as conn:
        pair = await create_merchant(conn, gateway.master_key, name="Target", origins=[])
    response = await post(con, path.replace("{m}", pair.merchant_id), **form)
    assert response.status_code == status and says in response.text, response.text[-800:]
    assert "Traceback" not in response.text
    missing = await con.http.get("/merchants/mer_nosuchmerchant")
    assert missing.status_code == 404 and "no such merchant" in missing.text


async def test_merchants_list_pages_past_the_first_200_newest_first(fresh_database_url: str, tmp_path: Path) -> None:
    from paygate_server.console.pages.merchants import LIST_LIMIT
    from paygate_server.ids import new_id
    from paygate_server.storage.merchants import insert_merchant
    from tests.support.clock import fake_clock

    async with running_console(make_settings(fresh_database_url, tmp_path)) as con:
        await signed_in(con, "viewer")
        made: list[str] = []
        with fake_clock() as clock:
            async with con.console.gateway.db.write() as conn:
                for n in range(LIST_LIMIT + 7):
                    if n % 3:  # a third of them alone in their microsecond, the rest in pairs: ties by id
                        clock.set_elapsed(n * 1e-6)
                    merchant_id = new_id("mer")
                    await insert_merchant(conn, merchant_id, f"Shop {n}", [])
                    made.append(merchant_id)
        async with con.console.gateway.db.read() as conn:
            rows = await list_merchants(conn, limit=1000)
        expected = [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)]
        assert sorted(expected) == sorted(made)

        first = await con.http.get("/merchants")
        shown = re.findall(r'href="/merchants/(mer_[A-Za-z0-9_]+)"', first.text)
        assert first.status_code == 200 and shown == expected[:LIST_LIMIT]
        older = re.search(r'href="(/merchants\?after=[^"]+)">Older', first.text)
        assert older is not None and ">Newest<" not in first.text

        # A merchant created meanwhile: the next page neither repeats a row nor skips one.
        async with con.console.gateway.db.write() as conn:
            await insert_merchant(conn, new_id("mer"), "Newcomer", [])
        second = await con.http.get(older.group(1).replace("&amp;", "&"))
        rest = re.findall(r'href="/merchants/(mer_[A-Za-z0-9_]+)"', second.text)
        assert second.status_code == 200 and rest == expected[LIST_LIMIT:]
        assert "Older" not in second.text and 'href="/merchants">Newest' in second.text
        assert "Newcomer" in (await con.http.get("/merchants")).text

        last = expected[-1]
        created_at = next(r["created_at"] for r in rows if r["id"] == last)
        empty = await con.http.get(f"/merchants?after={created_at}.{last}")
        assert empty.status_code == 200 and "No older merchants" in empty.text
        for bad in ("x", "12.", "99999999999999999999.mer_a", "1.mer_<script>", "1.pi_abc"):
            refused = await con.http.get("/merchants", params={"after": bad})
            assert refused.status_code == 400 and "page link is not valid" in refused.text, bad


@pytest.mark.parametrize("typed", ["https://*.shop.example", "https://shop_x.example", "https://shop.example.",
                                   'https://sh"op.example', "https://shop.example:0"])
async def test_an_origin_no_frame_could_honour_is_refused_not_shown_as_allowed(con: InProcessConsole,
                                                                               typed: str) -> None:
    """The checkout frame's frame-ancestors and postMessage target take only plain origins
    (paygate_checkout.is_valid_origin): a wildcard or a host no browser writes in an origin
    was stored and shown as "Origins allowed." — and then silently left out of every frame's
    policy, so the shop's checkout never rendered."""
    await signed_in(con, "admin")
    gateway = con.console.gateway
    async with gateway.db.write() as conn:
        pair = await create_merchant(conn, gateway.master_key, name="Target", origins=[])
    refused = await post(con, f"/merchants/{pair.merchant_id}/origins", origins=typed)
    assert refused.status_code == 400 and "origin must look like" in refused.text, refused.text[-800:]
    created = await post(con, "/merchants", name="Wild", origins=typed)
    assert created.status_code == 400 and "Not created" in created.text
    async with gateway.db.read() as conn:
        assert await list_origins(conn, pair.merchant_id) == []
        assert "Wild" not in [row["name"] for row in await list_merchants(conn, limit=1000)]


async def test_an_internationalized_origin_is_kept_as_browsers_send_it(con: InProcessConsole) -> None:
    """Browsers write an IDN host in punycode in Origin (and CSP takes it so): stored as
    typed, it matched no page and was left out of the frame's policy."""
    await signed_in(con, "admin")
    gateway = con.console.gateway
    async with gateway.db.write() as conn:
        pair = await create_merchant(conn, gateway.master_key, name="Bücher", origins=[])
    added = await post(con, f"/merchants/{pair.merchant_id}/origins", origins="https://Bücher.example")
    assert added.status_code == 200 and "Origins allowed" in added.text
    async with gateway.db.read() as conn:
        stored = await list_origins(conn, pair.merchant_id)
    assert stored == ["https://xn--bcher-kva.example"] and all(is_valid_origin(o) for o in stored)
