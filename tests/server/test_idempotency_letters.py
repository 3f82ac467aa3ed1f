"""Idempotency keys and request hashes are stored as SHA-256 in the letters a–p, never in
hex (a hex digest can hold a Luhn-valid run a PCI scan reports as a card number) nor as
sent; rows the code before migration 0019 stored in hex are still found for the window
after it — same request: the stored answer, another: 422 — and, after the window, no
longer looked for (docs/api.md, "Idempotency keys across the upgrade to 0019")."""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from paygate_server.clock import now_us
from paygate_server.crypto import load_master_key
from paygate_server.merchants import create_merchant
from paygate_server.storage import create_database, statements, upgrade
from paygate_server.storage.idempotency_forms import ROLL_ALLOWANCE_US
from paygate_server.storage.statements import Sql, execute, fetch_all
from tests.server.processing.scripted import process_body, scripted
from tests.support.app import TEST_MASTER_KEY, InProcessGateway, running_gateway
from tests.support.app import test_settings as settings_for
from tests.support.databases import another_database
from tests.support.signing import Credentials, SignedClient

INTENT, PROCESS = "/api/v1/payment/intent", "/api/v1/payment/process"
# A key that is a card number with a prefix: never stored as sent.
KEY = "order-4242424242424242"
LETTERS = re.compile(r"[a-p]{64}")

_ROWS = Sql("SELECT idempotency_key, request_hash FROM idempotency_keys WHERE merchant_id = :m")
_INTENTS = Sql("SELECT id FROM payment_intents WHERE merchant_id = :m")
_ATTEMPTS = Sql("SELECT t.id FROM transactions t JOIN payment_intents i ON i.id = t.intent_id"
                " WHERE i.merchant_id = :m")
_TO_HEX = Sql("UPDATE idempotency_keys SET idempotency_key = :key, request_hash = :request_hash,"
              " response_body = :body WHERE merchant_id = :m")
_NOT_UPGRADED = Sql("DELETE FROM idempotency_letters_since")
_UPGRADED = Sql("INSERT INTO idempotency_letters_since (upgraded_at) VALUES (:at)")
_UPGRADES = Sql("SELECT upgraded_at FROM idempotency_letters_since")


def _body(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _create_body(amount: int = 1999) -> bytes:
    return _body({"amount": amount, "currency": "USD", "productDetails": {"sku": "mug-01"}})


async def _rows(gw: InProcessGateway, sql: Sql, merchant_id: str) -> list[Any]:
    async with gw.gateway.db.read() as conn:
        return list(await fetch_all(conn, sql, m=merchant_id))


async def _store_as_before_0019(gw: InProcessGateway, shop: SignedClient, target: str, body: bytes,
                                answer: bytes) -> None:
    """Turn the merchant's one key row into what the code before 0019 stored for the same
    request (http/api.py at 9ff950c): hex SHA-256 of the key, hex SHA-256 of method, target
    and body, the answer sealed under the hex digest."""
    merchant_id = shop.creds.merchant_id
    key = hashlib.sha256(KEY.encode()).hexdigest()
    request = hashlib.sha256(f"POST\n{target}\n".encode())
    request.update(body)
    sealed = gw.gateway.master_key.seal("idempotency-response", answer,
                                        f"paygate/idempotency/v1\x00{merchant_id}\x00{key}".encode())
    async with gw.gateway.db.write() as conn:
        assert await execute(conn, _TO_HEX, key=key, request_hash=request.hexdigest(), body=sealed,
                             m=merchant_id) == 1
    assert [r["idempotency_key"] for r in await _rows(gw, _ROWS, merchant_id)] == [key]


async def _set_upgraded_at(url: str, tmp_path: Path, at: int) -> None:
    """As if 0019 had upgraded the database at ``at`` (a database it created records none)."""
    async with running_gateway(settings_for(url, tmp_path)) as g, g.gateway.db.write() as conn:
        await execute(conn, _NOT_UPGRADED)
        assert await execute(conn, _UPGRADED, at=at) == 1


@pytest.fixture
async def upgraded(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    """A gateway on a database 0019 upgraded moments ago: inside the window."""
    await _set_upgraded_at(fresh_database_url, tmp_path, now_us())
    async with running_gateway(settings_for(fresh_database_url, tmp_path)) as g:
        yield g


@pytest.fixture
def after_the_window() -> int:
    """An upgrade whose window closed a minute ago (default TTL: 24 h)."""
    return now_us() - ROLL_ALLOWANCE_US - 24 * 3600 * 1_000_000 - 60_000_000


async def test_keys_and_request_hashes_are_stored_in_letters_only(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    scripted(gw)
    created = await shop.post(INTENT, body=_create_body(), idempotency_key=KEY)
    assert created.status_code == 201, created.text
    paid = await shop.post(PROCESS, process_body(gw, created.json()["paymentIntentId"]),
                           idempotency_key=KEY + "-pay")
    assert paid.status_code == 200, paid.text
    rows = await _rows(gw, _ROWS, shop.creds.merchant_id)
    assert len(rows) == 2
    for row in rows:
        for stored in (row["idempotency_key"], row["request_hash"]):
            assert LETTERS.fullmatch(stored), f"{stored!r} is not 64 letters a-p"
            assert KEY not in stored and "4242" not in stored
    hex_key = hashlib.sha256(KEY.encode()).hexdigest()
    assert hex_key not in {r["idempotency_key"] for r in rows}


async def test_a_created_intent_stored_in_hex_before_the_upgrade_is_replayed_after_it(upgraded: InProcessGateway) -> None:
    """Within the window."""
    gw = upgraded
    shop = await gw.new_merchant()
    first = await shop.post(INTENT, body=_create_body(), idempotency_key=KEY)
    assert first.status_code == 201, first.text
    await _store_as_before_0019(gw, shop, INTENT, _create_body(), first.content)

    again = await shop.post(INTENT, body=_create_body(), idempotency_key=KEY)
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true", again.text
    assert again.content == first.content
    other = await shop.post(INTENT, body=_create_body(2500), idempotency_key=KEY)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused", other.text
    assert len(await _rows(gw, _INTENTS, shop.creds.merchant_id)) == 1
    assert len(await _rows(gw, _ROWS, shop.creds.merchant_id)) == 1  # the hex row, and no letters row beside it


async def test_a_payment_stored_in_hex_before_the_upgrade_is_replayed_after_it(upgraded: InProcessGateway) -> None:
    gw = upgraded
    shop = await gw.new_merchant()
    processor = scripted(gw)
    pid = (await shop.create_intent())["paymentIntentId"]
    body = _body(process_body(gw, pid))
    first = await shop.post(PROCESS, body=body, idempotency_key=KEY)
    assert first.status_code == 200 and first.json()["status"] == "succeeded", first.text
    await _store_as_before_0019(gw, shop, PROCESS, body, first.content)
    charges = processor.calls["charge"]

    again = await shop.post(PROCESS, body=body, idempotency_key=KEY)
    assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true", again.text
    assert again.content == first.content
    other = await shop.post(PROCESS, process_body(gw, pid), idempotency_key=KEY)  # another card encryption
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused", other.text
    assert processor.calls["charge"] == charges == 1 and len(await _rows(gw, _ATTEMPTS, shop.creds.merchant_id)) == 1


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The parameters of every statement the storage package sends, while recording."""
    sent: list[dict[str, Any]] = []
    original = statements._run

    async def recording(conn: Any, sql: Sql, params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        sent.append({"sql": sql.text, **params})
        return await original(conn, sql, params, *args, **kwargs)

    monkeypatch.setattr(statements, "_run", recording)
    yield sent


async def _keyed_create(g: InProcessGateway, recorded: list[dict[str, Any]]) -> tuple[SignedClient, int, bool]:
    """A keyed create after a first one (the store has read the window): how many statements
    it sent on the keys and intents, and whether any statement carried the key's hex spelling."""
    shop = await g.new_merchant()
    assert (await shop.post(INTENT, body=_create_body(), idempotency_key="warm-up")).status_code == 201
    recorded.clear()
    assert (await shop.post(INTENT, body=_create_body(), idempotency_key=KEY)).status_code == 201
    hex_key = hashlib.sha256(KEY.encode()).hexdigest()
    # The request's own statements on the keys and intents (not the notifier's polling, say).
    own = [params for params in recorded if re.search(r"\b(idempotency_keys|payment_intents)\b", params["sql"])]
    return shop, len(own), any(hex_key in params.values() for params in recorded)


async def test_the_probe_is_inside_the_claim_and_gone_after_the_window(
        fresh_database_url: str, tmp_path: Path, recorded: list[dict[str, Any]], after_the_window: int) -> None:
    """In the window the claim carries the hex spelling; after it, it does not, and a keyed
    request sends as many statements either way (the probe is no statement of its own)."""
    await _set_upgraded_at(fresh_database_url, tmp_path, now_us())
    async with running_gateway(settings_for(fresh_database_url, tmp_path)) as g:
        _, in_window, probed = await _keyed_create(g, recorded)
    assert probed
    await _set_upgraded_at(fresh_database_url, tmp_path, after_the_window)
    async with running_gateway(settings_for(fresh_database_url, tmp_path)) as g:
        _, after, probed = await _keyed_create(g, recorded)
    assert not probed and after == in_window


async def test_a_database_created_at_0019_or_later_is_never_probed(
        fresh_database_url: str, tmp_path: Path, recorded: list[dict[str, Any]]) -> None:
    """No older worker can write to a database `paygate db upgrade` created (its revisions
    commit at once; older code refuses a newer schema): 0019 records no time there, and no
    claim carries the hex spelling, from the first."""
    async with running_gateway(settings_for(fresh_database_url, tmp_path)) as g:
        async with g.gateway.db.read() as conn:
            assert await fetch_all(conn, _UPGRADES) == []
        _, _, probed = await _keyed_create(g, recorded)
    assert not probed


@pytest.fixture
async def late(fresh_database_url: str, tmp_path: Path, after_the_window: int) -> AsyncIterator[InProcessGateway]:
    """A gateway started after the window of an upgrade closed."""
    await _set_upgraded_at(fresh_database_url, tmp_path, after_the_window)
    async with running_gateway(settings_for(fresh_database_url, tmp_path)) as g:
        yield g


async def test_after_the_window_a_hex_row_is_no_longer_looked_for(late: InProcessGateway) -> None:
    """Past its TTL a key may be pruned (SPEC §3: kept at least 24 h): a hex row still there
    is not found, and the request runs as a new one."""
    shop = await late.new_merchant()
    first = await shop.post(INTENT, body=_create_body(), idempotency_key=KEY)
    assert first.status_code == 201
    await _store_as_before_0019(late, shop, INTENT, _create_body(), first.content)
    again = await shop.post(INTENT, body=_create_body(), idempotency_key=KEY)
    assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    assert len(await _rows(late, _INTENTS, shop.creds.merchant_id)) == 2


# The claim of the code before 0019 (storage/payments.py at 9ff950c), as its workers still
# send it during the roll.
_OLD_CLAIM = Sql(
    "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_hash, state, locked_at, created_at,"
    " resource_id) VALUES (:merchant_id, :key, :request_hash, 'in_progress', :now, :now, :resource_id)"
    " ON CONFLICT DO NOTHING"
)


async def test_a_worker_of_the_old_code_cannot_claim_a_key_a_new_one_holds(gw: InProcessGateway) -> None:
    """During the roll a retry can reach a worker not yet upgraded: its claim in hex of a key
    claimed in letters fails (the old worker answers 500, having run nothing) instead of
    running the request a second time; hex claims of other keys still work."""
    shop = await gw.new_merchant()
    first = await shop.post(INTENT, body=_create_body(), idempotency_key=KEY)
    assert first.status_code == 201
    merchant_id = shop.creds.merchant_id
    old_claim = {"merchant_id": merchant_id, "request_hash": "0" * 64, "now": now_us(), "resource_id": None}
    with pytest.raises(Exception, match="claimed by a newer worker"):
        async with gw.gateway.db.write() as conn:
            await execute(conn, _OLD_CLAIM, key=hashlib.sha256(KEY.encode()).hexdigest(), **old_claim)
    assert len(await _rows(gw, _ROWS, merchant_id)) == 1
    async with gw.gateway.db.write() as conn:
        assert await execute(conn, _OLD_CLAIM, key=hashlib.sha256(b"another key").hexdigest(), **old_claim) == 1
    assert len(await _rows(gw, _ROWS, merchant_id)) == 2


@pytest.fixture
def unmigrated_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    with another_database(database_url, tmp_path, migrated=False) as url:
        yield url


async def test_a_key_stored_at_0017_is_kept_as_it_is_and_replayed_after_0019(unmigrated_url: str,
                                                                               tmp_path: Path) -> None:
    """The row written before the upgrade, by the old code's claim, crosses 0019 untouched
    (nothing is rewritten) and its request is recognized after it."""
    db = create_database(unmigrated_url)
    master = load_master_key(TEST_MASTER_KEY, tmp_path / "unused.key")
    body, answer = _create_body(), b'{"paymentIntentId":"pi_before_0019","status":"created"}'
    key = hashlib.sha256(KEY.encode()).hexdigest()
    request = hashlib.sha256(f"POST\n{INTENT}\n".encode())
    request.update(body)
    try:
        await upgrade(db, "0017")
        async with db.write() as conn:
            pair = await create_merchant(conn, master, name="Before", origins=["http://127.0.0.1:9"])
            sealed = master.seal("idempotency-response", answer,
                                 f"paygate/idempotency/v1\x00{pair.merchant_id}\x00{key}".encode())
            assert await execute(conn, _OLD_CLAIM, merchant_id=pair.merchant_id, key=key,
                                 request_hash=request.hexdigest(), now=now_us(), resource_id=None) == 1
            assert await execute(conn, Sql("UPDATE idempotency_keys SET state = 'done', response_status = 201,"
                                           " response_body = :body WHERE idempotency_key = :key"),
                                 body=sealed, key=key) == 1
        await upgrade(db)
        async with db.read() as conn:
            assert len(await fetch_all(conn, _UPGRADES)) == 1  # upgraded, not created: a window
    finally:
        await db.dispose()
    async with running_gateway(settings_for(unmigrated_url, tmp_path)) as g:
        shop = SignedClient(g.http, Credentials(pair.merchant_id, pair.api_key, pair.signing_secret))
        assert [r["idempotency_key"] for r in await _rows(g, _ROWS, pair.merchant_id)] == [key]
        again = await shop.post(INTENT, body=body, idempotency_key=KEY)
        assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true", again.text
        assert again.content == answer
        other = await shop.post(INTENT, body=_create_body(2500), idempotency_key=KEY)
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
        assert await _rows(g, _INTENTS, pair.merchant_id) == []
