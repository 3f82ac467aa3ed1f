"""The console's pages: each module exports ``routes`` (Starlette routes), composed by
:func:`paygate_server.console.app.create_console_app` in the order of :data:`PAGE_MODULES`."""
from __future__ import annotations

__all__ = ["PAGE_MODULES"]

PAGE_MODULES: tuple[str, ...] = (
    "paygate_server.console.pages.auth",
    "paygate_server.console.pages.overview",
    "paygate_server.console.pages.payments",
    "paygate_server.console.pages.payment",
    "paygate_server.console.pages.payment_actions",
    "paygate_server.console.pages.reconciliation",
    "paygate_server.console.pages.merchants",
    "paygate_server.console.pages.activity",
    "paygate_server.console.pages.operators",
)
