"""The vault's place in the gateway (:data:`extension`, listed in ``app.EXTENSIONS``).

``setup`` registers :class:`VaultService` as ``gateway.vault`` (the process
endpoint redeems ``paymentDetails.token`` through it) after making sure a data key exists;
``background_tasks`` purges expired tokens (storage/vault.py ``purge_expired``); ``refresh_tasks`` picks up data-key
rotations made by other processes (in API-only processes too: they encrypt new cards). The checkout's routes are in :mod:`paygate_server.checkout.endpoints`.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from paygate_server.extensions import Extension, refresh_every
from paygate_server.storage.availability import log_failure
from paygate_server.vault.service import VaultService

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["VaultExtension", "extension"]

log = logging.getLogger("paygate.vault")


async def _purge_forever(gateway: Gateway) -> None:
    vault = gateway.vault
    interval = max(0.05, gateway.settings.vault_purge_interval_s)
    while True:
        try:
            done = await vault.purge()
            if done.cvcs_dropped or done.cards_deleted or done.limits_deleted:
                log.info("vault purge: %d cards deleted, %d CVCs dropped, %d tokenization counts deleted",
                         done.cards_deleted, done.cvcs_dropped, done.limits_deleted)
        except Exception:
            log_failure(log, "vault purge failed")
        await asyncio.sleep(interval)


class VaultExtension(Extension):
    name = "vault"
    provides = ("vault",)

    async def setup(self, gateway: Gateway) -> None:
        vault = VaultService(gateway)
        await vault.start()
        gateway.vault = vault

    def background_tasks(self, gateway: Gateway) -> list[Coroutine[Any, Any, None]]:
        return [_purge_forever(gateway)]

    def refresh_tasks(self, gateway: Gateway) -> list[Coroutine[Any, Any, None]]:
        interval = max(0.05, gateway.settings.vault_purge_interval_s)
        return [refresh_every(lambda: interval, "the vault data keys", gateway.vault.keys.reload)]


extension = VaultExtension()
