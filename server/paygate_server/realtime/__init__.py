"""Real-time status: wake long-polls and SSE streams when an intent changes, on any worker.

How a wake-up travels: every change to an intent, transaction or refund is written to
``change_log`` by a database trigger. On PostgreSQL the same trigger issues
``NOTIFY paygate_changes, '<intent id>'``, delivered at commit to one ``LISTEN``ing
connection per worker process. On SQLite (one host), each worker tails ``change_log`` by id
every ``PAYGATE_CHANGE_POLL_INTERVAL_S`` (20 ms): SQLite has one writer at a time, so ids
become visible in commit order and a high-water mark skips nothing. Either way the worker
then wakes its local waiters for that intent, which re-read the intent from the database.
The signal is read in ``paygate_server.storage.notifications``; :mod:`.notifier` only
fans it out.
"""
from __future__ import annotations

from paygate_server.realtime.notifier import ChangeNotifier, Subscription

__all__ = ["ChangeNotifier", "Subscription"]
