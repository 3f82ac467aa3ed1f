"""One captured change (a ``change_log`` row), a relay position, and the record format every sink writes.

Both are what the change log's storage reads return (:mod:`.change_log`, :mod:`.relay_offsets`);
the relay, the archive, the broker and the webhooks consume them (``paygate_server.cdc``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paygate_server import jsoncodec

__all__ = ["Change", "Position", "START"]


@dataclass(frozen=True, slots=True)
class Position:
    """Everything before this point has been delivered (see ``storage.schema_history.cdc_offsets``).

    PostgreSQL: all rows with ``txid < horizon``, and inside the open window
    ``[horizon, window_end)`` all rows with ``id <= last_id``. SQLite: ``id <= last_id``.
    Positions only grow; :meth:`key` orders them.
    """

    horizon: int = 0
    window_end: int | None = None
    last_id: int = 0

    def key(self) -> tuple[int, int]:
        # A closed window at X sorts after every position inside a window that ends at X.
        return (self.horizon, self.last_id)

    def covers(self, change_id: int, txid: int | None) -> bool:
        """Has a relay at this position delivered the change with this id and txid?"""
        if txid is None:  # captured on SQLite: ids are in commit order
            return change_id <= self.last_id
        if txid < self.horizon:
            return True
        return self.window_end is not None and txid < self.window_end and change_id <= self.last_id

    def encode(self) -> str:
        return f"{self.horizon}:{'' if self.window_end is None else self.window_end}:{self.last_id}"

    @classmethod
    def decode(cls, text: str) -> Position:
        horizon, window_end, last_id = text.split(":")
        return cls(int(horizon), int(window_end) if window_end else None, int(last_id))

    def to_json(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "windowEnd": self.window_end, "lastId": self.last_id}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Position:
        return cls(int(value["horizon"]), value.get("windowEnd"), int(value["lastId"]))


START = Position()


@dataclass(frozen=True, slots=True)
class Change:
    id: int
    entity: str
    entity_id: str
    op: str
    intent_id: str
    merchant_id: str
    intent_seq: int
    data: str  # the row after the change, JSON text exactly as the trigger wrote it
    txid: int | None
    created_at: int
    # Where the relay stands once this change is delivered (set by the reader).
    position: Position = START

    def snapshot(self) -> dict[str, Any]:
        value = jsoncodec.loads(self.data)
        assert isinstance(value, dict)
        return value

    def record(self) -> dict[str, Any]:
        """The archived / published form (camelCase like the API; data as an object)."""
        return {
            "id": self.id, "entity": self.entity, "entityId": self.entity_id, "op": self.op,
            "intentId": self.intent_id, "merchantId": self.merchant_id, "seq": self.intent_seq,
            "txid": self.txid, "createdAt": self.created_at, "data": self.snapshot(),
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Change:
        return cls(rec["id"], rec["entity"], rec["entityId"], rec["op"], rec["intentId"],
                   rec["merchantId"], rec["seq"], jsoncodec.dumps(rec["data"]).decode(),
                   rec.get("txid"), rec["createdAt"])

    def same_content(self, other: Change) -> bool:
        """Equal as history: ids, order and the row snapshot (compared as JSON values)."""
        return (self.id, self.entity, self.entity_id, self.op, self.intent_id, self.merchant_id,
                self.intent_seq, self.created_at) == (
            other.id, other.entity, other.entity_id, other.op, other.intent_id, other.merchant_id,
            other.intent_seq, other.created_at) and self.snapshot() == other.snapshot()
