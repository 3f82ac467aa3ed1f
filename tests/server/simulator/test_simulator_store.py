"""The store in-process: serialised decisions, batch failure isolation, reopen."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
from dataclasses import replace

import pytest

from paygate_server.simulator.store import (
    ChargeDisposition,
    ChargeMode,
    ChargeRecord,
    HoldDisposition,
    RefundDisposition,
    Store,
    StoreClosed,
)


def _record(reference: str, amount: int = 100, status: str = "approved") -> ChargeRecord:
    return ChargeRecord(
        reference=reference,
        payment_intent_id="pi_store",
        merchant_id="mer_store",
        amount=amount,
        currency="USD",
        card_brand="visa",
        card_last4="4242",
        status=status,
        auth_code="ABC123" if status == "approved" else None,
        decline_code=None if status == "approved" else "generic_decline",
        created_at="2025-03-04T05:06:07.089Z",
    )


async def test_concurrent_same_reference_is_created_once(tmp_path: pathlib.Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.open()
    try:
        results = await asyncio.gather(*(store.charge(_record("txn_1")) for _ in range(300)))
        dispositions = [d for d, _ in results]
        assert dispositions.count(ChargeDisposition.CREATED) == 1
        assert dispositions.count(ChargeDisposition.EXISTING) == 299
        assert len(await store.list_charges(payment_intent_id="pi_store")) == 1
        conflict, existing = await store.charge(_record("txn_1", amount=999))
        assert conflict is ChargeDisposition.CONFLICT and existing and existing.amount == 100
    finally:
        await store.close()


async def test_modes(tmp_path: pathlib.Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.open()
    try:
        disposition, _ = await store.charge(_record("e"), ChargeMode.ERROR_IF_NEW)
        assert disposition is ChargeDisposition.ERROR
        assert await store.get_charge("e") is None
        assert (await store.charge(_record("r"), ChargeMode.RETRY_FIRST))[0] is (
            ChargeDisposition.RETRY_LATER
        )
        assert await store.get_charge("r") is None
        assert (await store.charge(_record("r"), ChargeMode.RETRY_FIRST))[0] is (
            ChargeDisposition.CREATED
        )
        # Once recorded, every mode replays.
        for mode in ChargeMode:
            assert (await store.charge(_record("r"), mode))[0] is ChargeDisposition.EXISTING
    finally:
        await store.close()


async def test_a_failing_operation_does_not_take_its_batch_down(tmp_path: pathlib.Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.open()

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO retry_marks (reference, created_at) VALUES ('half', 'x')")
        raise RuntimeError("boom")

    try:
        # Submitted together so that they share batches with the failing operation.
        good = [store.charge(_record(f"txn_{i}")) for i in range(50)]
        bad = store._write(half_then_fail)
        more = [store.charge(_record(f"txn_{i}")) for i in range(50, 100)]
        results = await asyncio.gather(*good, bad, *more, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
        assert len(await store.list_charges(merchant_id="mer_store")) == 100
        # The failed operation's first write was rolled back.
        marks = await store._read(
            lambda conn: conn.execute("SELECT count(*) FROM retry_marks").fetchone()[0]
        )
        assert marks == 0
    finally:
        await store.close()


async def test_refund_rules(tmp_path: pathlib.Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.open()
    try:
        await store.charge(_record("txn_a", amount=500))
        await store.charge(_record("txn_d", status="declined"))
        now = "2025-03-04T05:06:08.000Z"
        assert (await store.refund("re_1", "txn_a", 200, now))[0] is RefundDisposition.CREATED
        assert (await store.refund("re_1", "txn_a", 200, now))[0] is RefundDisposition.EXISTING
        assert (await store.refund("re_1", "txn_a", 201, now))[0] is RefundDisposition.CONFLICT
        assert (await store.refund("re_2", "txn_a", 301, now))[0] is (
            RefundDisposition.EXCEEDS_REMAINING
        )
        assert (await store.refund("re_3", "txn_d", 1, now))[0] is RefundDisposition.NOT_REFUNDABLE
        assert (await store.refund("re_4", "txn_x", 1, now))[0] is (
            RefundDisposition.CHARGE_NOT_FOUND
        )
        charge = await store.get_charge("txn_a")
        assert charge is not None and charge.amount_refunded == 200
    finally:
        await store.close()


async def test_reopen_keeps_everything_and_closed_store_refuses(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    store.open()
    await store.charge(_record("txn_keep"))
    await store.close()
    with pytest.raises(StoreClosed):
        await store.charge(_record("txn_late"))
    again = Store(path)
    again.open()
    try:
        assert await again.get_charge("txn_keep") == _record("txn_keep")
        mode = await again._read(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"
    finally:
        await again.close()


# The charges table as it was before authorizations (a store file an older simulator wrote).
_OLD_SCHEMA = """
CREATE TABLE charges (
    reference TEXT PRIMARY KEY, payment_intent_id TEXT NOT NULL, merchant_id TEXT NOT NULL,
    amount INTEGER NOT NULL, currency TEXT NOT NULL, card_brand TEXT NOT NULL,
    card_last4 TEXT NOT NULL, status TEXT NOT NULL, auth_code TEXT, decline_code TEXT,
    created_at TEXT NOT NULL, amount_refunded INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO charges VALUES ('txn_old', 'pi_old', 'mer_old', 700, 'USD', 'visa', '4242',
    'approved', 'ABC123', NULL, '2025-03-04T05:06:07.089Z', 100);
"""


async def test_a_store_from_before_authorizations_opens_with_its_charges_captured(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SCHEMA)
    conn.close()
    store = Store(path)
    store.open()
    try:
        charge = await store.get_charge("txn_old")
        assert charge is not None
        assert (charge.capture, charge.voided, charge.expires_at) == (True, False, None)
        assert charge.captured_amount == 700 and charge.amount_refunded == 100
        now = "2025-03-05T00:00:00.000Z"
        assert (await store.refund("re_old", "txn_old", 600, now))[0] is RefundDisposition.CREATED
        disposition, capture, _ = await store.capture("cap_old", "txn_old", 1, now)
        assert disposition is HoldDisposition.CREATED and capture is not None
        assert (capture.status, capture.decline_code) == ("refused", "already_captured")
    finally:
        await store.close()
    again = Store(path)  # and opening it again changes nothing
    again.open()
    try:
        charge = await again.get_charge("txn_old")
        assert charge is not None and charge.amount_refunded == 700
    finally:
        await again.close()


async def test_one_capture_per_authorization_is_also_the_schemas_rule(
    tmp_path: pathlib.Path,
) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.open()
    try:
        auth = replace(_record("txn_auth"), capture=False, expires_at="2999-01-01T00:00:00.000Z")
        await store.charge(auth)
        now = "2025-03-04T05:06:08.000Z"
        assert (await store.capture("cap_1", "txn_auth", 60, now))[1].status == "captured"  # type: ignore[union-attr]

        def second_captured_row(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO captures (reference, charge_reference, amount, currency, status, "
                "decline_code, created_at) VALUES ('cap_2', 'txn_auth', 40, 'USD', 'captured', "
                "NULL, ?)",
                (now,),
            )

        with pytest.raises(sqlite3.IntegrityError):
            await store._write(second_captured_row)
        charge = await store.get_charge("txn_auth")
        assert charge is not None and charge.amount_captured == 60
    finally:
        await store.close()


async def test_expiry_is_decided_on_the_time_given(tmp_path: pathlib.Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.open()
    try:
        ends = "2025-03-04T06:00:00.000Z"
        await store.charge(replace(_record("txn_a"), capture=False, expires_at=ends))
        await store.charge(replace(_record("txn_b"), capture=False, expires_at=ends))
        before, at = "2025-03-04T05:59:59.999Z", ends
        _, held, _ = await store.capture("cap_a", "txn_a", 100, before)
        _, gone, _ = await store.capture("cap_b", "txn_b", 100, at)
        assert held is not None and held.status == "captured"
        assert gone is not None and gone.decline_code == "authorization_expired"
        charge = await store.get_charge("txn_b")
        assert charge is not None and charge.expired(at) and not charge.expired(before)
    finally:
        await store.close()
