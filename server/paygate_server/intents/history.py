"""An intent's history as API events (SPEC §4 ``GET …/intent/{id}/history``).

The change log and the archive keep raw rows (snake_case, JSON columns as text, times in
integer microseconds) — the archive format stays what it is. Converting happens here, at
the edge, once per object kind, with the very renderers that answer for the object
elsewhere in the API: ``render_intent`` (the intent endpoints), ``render_attempt``,
``render_refund`` (the refund endpoint). The webhook consumer renders its payloads through
:func:`render_object` too, so an object has one wire shape wherever it appears.

An event: ``{"sequence", "type", "objectId", "data", "createdAt"}`` — ``sequence`` is the
per-intent ``intent_seq`` (gap-free), ``type`` ``<kind>.created`` for an insert and
``<kind>.updated`` for an update, ``createdAt`` the time of the change.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from paygate_server.clock import to_rfc3339
from paygate_server.intents.schemas import render_intent
from paygate_server.processing.schemas import render_attempt
from paygate_server.refunds.schemas import render_refund
from paygate_server.storage.changes import Change

__all__ = ["OBJECT_KINDS", "EVENT_TYPES", "render_object", "history_event", "render_history"]

Renderer = Callable[[Mapping[str, Any]], dict[str, Any]]

# change_log ``entity`` -> (the object's name in event types, its API renderer).
OBJECT_KINDS: dict[str, tuple[str, Renderer]] = {
    "payment_intent": ("payment_intent", render_intent),
    "transaction": ("attempt", render_attempt),
    "refund": ("refund", render_refund),
}
_VERBS = {"insert": "created", "update": "updated"}
EVENT_TYPES = tuple(f"{kind}.{verb}" for kind, _ in OBJECT_KINDS.values() for verb in _VERBS.values())


class _Snapshot(dict[str, Any]):
    """A captured row. A column added by a later migration is absent from rows captured
    (and archived) before it: it reads as NULL, as the column would have been, instead of
    failing a whole timeline."""

    def __missing__(self, key: str) -> None:
        return None


def render_object(entity: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The API shape of a captured row of ``entity`` (a ``CAPTURED_TABLES`` value)."""
    return OBJECT_KINDS[entity][1](_Snapshot(snapshot))


def history_event(change: Change) -> dict[str, Any]:
    kind, render = OBJECT_KINDS[change.entity]
    return {
        "sequence": change.intent_seq,
        "type": f"{kind}.{_VERBS[change.op]}",
        "objectId": change.entity_id,
        "data": render(_Snapshot(change.snapshot())),
        "createdAt": to_rfc3339(change.created_at),
    }


def render_history(changes: Iterable[Change]) -> list[dict[str, Any]]:
    """Events oldest first (``changes`` in ``intent_seq`` order)."""
    return [history_event(c) for c in changes]
