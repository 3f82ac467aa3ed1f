"""The record of what operators did (SPEC §12): who, what, on what, from where, when.

``detail`` holds plain facts (amounts, ids, outcomes) as a JSON object — never a card
number, a secret or a password; callers pass only such facts.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

from paygate_server.clock import now_us
from paygate_server.storage import Database, Transaction
from paygate_server.storage.operators import ActionRow, insert_action, list_actions

__all__ = ["ActionRow", "record_action", "record_action_in", "recent_actions"]

Detail = Mapping[str, str | int | bool | None]


async def record_action_in(conn: Transaction, *, operator_id: str, action: str, target: str | None = None,
                           detail: Detail | None = None, remote_addr: str | None = None) -> None:
    """Record it in the caller's transaction (so the action and its record commit together)."""
    await insert_action(conn, operator_id=operator_id, action=action, target=target,
                        detail=json.dumps(dict(detail), sort_keys=True) if detail else None,
                        remote_addr=remote_addr, now=now_us())


async def record_action(db: Database, *, operator_id: str, action: str, target: str | None = None,
                        detail: Detail | None = None, remote_addr: str | None = None) -> None:
    """Record it in a transaction of its own (an action with no other write: a login)."""
    async with db.write() as conn:
        await record_action_in(conn, operator_id=operator_id, action=action, target=target, detail=detail,
                               remote_addr=remote_addr)


async def recent_actions(db: Database, *, limit: int, before_id: int | None = None,
                         target: str | None = None) -> list[ActionRow]:
    async with db.read() as conn:
        return await list_actions(conn, limit=limit, before_id=before_id, target=target)
