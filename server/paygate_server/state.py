"""The gateway's process-wide state, built once by the app factory's lifespan.

No import-time singletons: everything a request needs hangs off :class:`Gateway`, reached
as ``request.state.gateway``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paygate_server.auth import Authenticator
from paygate_server.config import Settings
from paygate_server.crypto import MasterKey
from paygate_server.db import Database
from paygate_server.realtime import ChangeNotifier

__all__ = ["Gateway"]


@dataclass
class Gateway:
    settings: Settings
    db: Database
    master_key: MasterKey
    authenticator: Authenticator
    notifier: ChangeNotifier
    # Filled in by the domains that own them (processing, checkout, webhooks, …).
    services: dict[str, Any] = field(default_factory=dict)
