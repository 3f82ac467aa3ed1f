"""Realistic payments, many and fast, for the console's reads (tests and the load check).

:func:`seed_payments` makes ``n`` payments of ``merchants`` merchants — a spread of
statuses (charged, declined, held, captured, voided, unknown, never paid), amounts, card
brands and last 4s, routes (the default processor and two accounts), some refunds — a
fifth created in the last hour and the rest over the last 30 days, and writes them
through :func:`paygate_server.storage.bulk_payments.insert_payments` (the change-log
triggers fire as for any insert: each intent gets its history). It returns what it wrote,
so a test can count what a read should find.

    python -m tests.support.console_seed sqlite:///tmp/console.db 100000   # or postgresql://…
"""
from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import dataclass, field
from typing import Any

from paygate_server.clock import now_us
from paygate_server.storage import create_database, upgrade
from paygate_server.storage.bulk_payments import insert_payments
from paygate_server.storage.engine import Database

__all__ = ["Seeded", "make_payments", "seed_payments", "COMMON_LAST4"]

MINUTE_US = 60_000_000
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
COMMON_LAST4 = "4242"  # a test card many payments share
ROUTES = ("simulator", "pa_seedalpha", "pa_seedbeta")
BRANDS = ("visa", "mastercard", "amex", "discover")
# What happened to the payment: (intent status, [(attempt kind, attempt status)…], weight).
_STORIES: tuple[tuple[str, tuple[tuple[str, str], ...], int], ...] = (
    ("succeeded", (("charge", "succeeded"),), 55),
    ("failed", (("charge", "failed"),), 8),
    ("succeeded", (("charge", "failed"), ("charge", "succeeded")), 6),  # declined, then paid
    ("requires_capture", (("authorization", "succeeded"),), 8),
    ("succeeded", (("authorization", "succeeded"), ("capture", "succeeded")), 6),
    ("canceled", (("authorization", "succeeded"), ("void", "succeeded")), 4),
    ("in_progress", (("charge", "unknown"),), 3),
    ("created", (), 10),
)


@dataclass
class Seeded:
    """What was written: every intent row, attempt row and refund row, by id."""
    merchants: list[str] = field(default_factory=list)
    intents: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    queue: list[dict[str, Any]] = field(default_factory=list)


def make_payments(n: int, *, merchants: int = 20, now: int | None = None, seed: int = 7,
                  prefix: str = "") -> Seeded:
    """The rows of ``n`` payments (nothing written). ``prefix`` keeps two seedings' ids apart."""
    rng = random.Random(seed)
    now = now_us() if now is None else now
    out = Seeded()
    tag = f"{prefix}{seed}"
    out.merchants = [f"mer_seed{tag}x{i}" for i in range(merchants)]
    last4s = [f"{rng.randrange(10_000):04d}" for _ in range(3000)]
    weights = [w for _, _, w in _STORIES]
    for i in range(n):
        recent = rng.random() < 0.2
        created = now - rng.randrange(HOUR_US if recent else 30 * DAY_US) - 10_000_000
        status, steps, _ = rng.choices(_STORIES, weights)[0]
        intent_id = f"pi_seed{tag}x{i:07d}"
        merchant = out.merchants[rng.randrange(merchants)]
        amount = rng.choice((500, 999, 1999, 2500, 4999, 10_000, 25_000)) + rng.randrange(100)
        manual = any(kind == "authorization" for kind, _ in steps)
        last4 = COMMON_LAST4 if rng.random() < 0.3 else rng.choice(last4s)
        brand = rng.choice(BRANDS)
        route = rng.choice(ROUTES)
        t = created
        parent: str | None = None
        received = capturable = 0
        for step, (kind, outcome) in enumerate(steps):
            t += rng.randrange(1_000_000, 5_000_000)
            attempt_id = f"txn_seed{tag}x{i:07d}x{step}"
            out.attempts.append({
                "id": attempt_id, "intent_id": intent_id, "merchant_id": merchant, "status": outcome,
                "reference": f"ref_seed{tag}x{i:07d}x{step}", "connector": route, "amount": amount,
                "currency": "USD", "card_brand": brand, "card_last4": last4, "card_exp_month": 12,
                "card_exp_year": 2034, "card_fingerprint": f"{i:064x}", "vault_id": None,
                "auth_code": "A1B2C3" if outcome == "succeeded" else None,
                "decline_code": "insufficient_funds" if outcome == "failed" else None,
                "error_code": "card_declined" if outcome == "failed" else None,
                "error_message": "The card has insufficient funds." if outcome == "failed" else None,
                "created_at": t, "updated_at": t + 200_000, "kind": kind,
                "parent_id": parent if kind in ("capture", "void") else None,
                "reason": "requested" if kind == "void" else None, "processor_id": f"proc_{i}x{step}"})
            if kind == "authorization" and outcome == "succeeded":
                parent, capturable = attempt_id, amount
            if outcome == "succeeded" and kind in ("charge", "capture"):
                received, capturable = amount, 0
            if outcome == "unknown":
                out.queue.append({"kind": "charge", "object_id": attempt_id, "intent_id": intent_id,
                                  "merchant_id": merchant, "due_at": t + MINUTE_US, "checks": 1,
                                  "last_result": "timeout", "created_at": t})
        if status != "requires_capture":
            capturable = 0  # as the gateway keeps it: only a hold has an amount to capture
        refunded = 0
        if received and rng.random() < 0.1:
            refunded = rng.randrange(1, received + 1)
            charge = next(a for a in reversed(out.attempts) if a["intent_id"] == intent_id
                          and a["status"] == "succeeded" and a["kind"] in ("charge", "capture"))
            out.refunds.append({
                "id": f"re_seed{tag}x{i:07d}", "intent_id": intent_id, "merchant_id": merchant,
                "transaction_id": charge["id"], "reference": f"rref_seed{tag}x{i:07d}", "amount": refunded,
                "currency": "USD", "status": "succeeded", "reason": None, "error_code": None,
                "created_at": t + 1_000_000, "updated_at": t + 1_200_000})
        out.intents.append({
            "id": intent_id, "merchant_id": merchant, "status": status, "amount": amount, "currency": "USD",
            "amount_refunded": refunded, "product_details": '{"name":"Mug"}', "description": None,
            "metadata": None, "client_secret_hash": f"{tag}{i:060x}"[-64:], "last_error": None,
            "card": None, "version": 1 + len(steps), "failed_attempts": sum(o == "failed" for _, o in steps),
            "created_at": created, "updated_at": t, "capture_method": "manual" if manual else "automatic",
            "amount_capturable": capturable, "amount_received": received,
            "cancellation_reason": "requested" if status == "canceled" else None})
    return out


async def seed_payments(db: Database, n: int, **kw: Any) -> Seeded:
    """Make ``n`` payments (:func:`make_payments`) and write them."""
    seeded = make_payments(n, **kw)
    await insert_payments(db, merchant_rows=[{"id": m, "name": m, "created_at": now_us()} for m in seeded.merchants],
                          intents=seeded.intents, attempts=seeded.attempts, refund_rows=seeded.refunds,
                          queue_rows=seeded.queue)
    return seeded


async def _main(url: str, n: int) -> None:
    db = create_database(url)
    try:
        await upgrade(db)
        await seed_payments(db, n)
    finally:
        await db.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        print("usage: python -m tests.support.console_seed DATABASE_URL N", file=sys.stderr)
        sys.exit(2)
    asyncio.run(_main(sys.argv[1], int(sys.argv[2])))
