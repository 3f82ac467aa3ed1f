"""What the operator console reads (SPEC §12), in one place for the pages to import.

Every read takes the :class:`~paygate_server.storage.engine.Database` and returns typed,
frozen dataclasses or named tuples — no rows, no SQL types. Amounts are integer minor
units, times integer microseconds since the epoch (overview minutes: Unix seconds). Card
data is at most brand and last 4. The modules behind them:

=======================================  ===============================================
``search_payments(db, PaymentSearch)``   console_search: filters, newest first, keyset
  → :class:`PaymentPage`                 pages (``PaymentPage.next_cursor`` → ``after``)
``payment_detail(db, intent_id)``        console_payment: the intent, its attempts (the
  → :class:`PaymentDetail` | None        route, reference, outcome), refunds, webhook
                                         events and deliveries
``reconciliation_queue(db, limit,        console_reconciliation: unknown (and stale
  cursor)`` → :class:`ReconciliationPage` pending) operations, oldest first, the
                                         processor's last answer
``overview(db)`` → :class:`Overview`     console_overview: the last hour, 60 points per
                                         series, cluster-wide
=======================================  ===============================================

A payment's timeline is not read here: call
``paygate_server.cdc.timeline.whole_timeline(db, intent_id, gateway_archive_store_or_None)``
and render it with ``paygate_server.intents.history.render_history`` (the events of the
API's ``…/intent/{id}/history``; ``HistoryGap``/``ArchiveProblem`` when it is incomplete).

A filter or cursor the reads refuse raises :class:`InvalidSearch` (a ``ValueError``) whose
message can be shown to the operator as it is. The latency and backlog samples the
overview reads are written by the observability extension's sampler
(observability/console_sampler.py → console_samples.py).
"""
from __future__ import annotations

from paygate_server.storage.console_overview import (
    BacklogMinute,
    LatencyMinute,
    OutcomeMinute,
    Overview,
    RateMinute,
    RouteMinute,
    overview,
)
from paygate_server.storage.console_payment import (
    AttemptView,
    DeliveryView,
    IntentSummary,
    PaymentDetail,
    RefundView,
    WebhookEventView,
    payment_detail,
)
from paygate_server.storage.console_reconciliation import (
    ReconciliationPage,
    StuckOperation,
    reconciliation_queue,
)
from paygate_server.storage.console_search import (
    MAX_PAGE_SIZE,
    InvalidSearch,
    PaymentPage,
    PaymentRow,
    PaymentSearch,
    search_payments,
)

__all__ = [
    "MAX_PAGE_SIZE", "InvalidSearch",
    "PaymentSearch", "PaymentRow", "PaymentPage", "search_payments",
    "IntentSummary", "AttemptView", "RefundView", "DeliveryView", "WebhookEventView", "PaymentDetail",
    "payment_detail",
    "StuckOperation", "ReconciliationPage", "reconciliation_queue",
    "OutcomeMinute", "RateMinute", "RouteMinute", "BacklogMinute", "LatencyMinute", "Overview", "overview",
]
