"""Durable change history (SPEC §8): the relay, the archive, the broker sink, audits.

The database captures every change into ``change_log`` (``storage/capture.py``). This package
ships it: :mod:`.relay` pumps each consumer from its durable offset, reading commit-safely
under a per-consumer lease (the statements, per database, are the storage package's:
``storage/change_log.py``, ``relay_leases.py``, ``relay_offsets.py``); :mod:`.archive` writes
checksummed segments to a folder or S3 (:mod:`.store`, :mod:`.s3`); :mod:`.broker`
publishes to NATS JetStream; :mod:`.audit` verifies the archive against the database.

As a gateway extension (:data:`extension`) it builds the relay (``gateway.relay``) with the archive
and, when ``PAYGATE_BROKER_URL`` is set, the broker; other domains add their own consumers
in their ``setup`` (webhooks does). ``paygate serve`` runs the relay in every worker (the
leases keep one active per consumer) unless ``PAYGATE_RELAY=0``; ``paygate relay`` runs
it on its own. It also prunes the change log every ``PAYGATE_HISTORY_PRUNE_INTERVAL_S``
(:mod:`.prune`, under a lease: one process prunes) unless that is 0.
"""
from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from paygate_server.extensions import Extension

if TYPE_CHECKING:
    from paygate_server.state import Gateway

# The relay's parts are imported by the extension's set-up, not with the package: the
# package is imported by its commands (cdc/cli.py) too, `paygate --help` included.

__all__ = ["CdcExtension", "extension"]


class CdcExtension(Extension):
    name = "cdc"
    provides = ("relay", "archive_store")

    async def setup(self, gateway: Gateway) -> None:
        from paygate_server.cdc.archive import ArchiveSink
        from paygate_server.cdc.broker import BrokerSink, broker_client_for
        from paygate_server.cdc.relay import Relay
        from paygate_server.cdc.store import store_for
        from paygate_server.storage.archive_index import ArchiveIndex

        settings = gateway.settings
        relay = Relay(gateway.db, settings)
        store = store_for(settings)
        gateway.archive_store = store
        relay.add(ArchiveSink(store, ArchiveIndex(gateway.db), batch_size=settings.archive_segment_max_changes,
                              linger_s=settings.archive_linger_s, fault_point=settings.fault_point))
        if settings.broker_url:
            client = broker_client_for(settings.broker_url, stream=settings.broker_stream,
                                       subject_prefix=settings.broker_subject_prefix)
            relay.add(BrokerSink(client, subject_prefix=settings.broker_subject_prefix,
                                 batch_size=settings.relay_batch_size, fault_point=settings.fault_point))
        gateway.relay = relay
        gateway.notifier.add_listener(relay.wake)

    def background_tasks(self, gateway: Gateway) -> list[Coroutine[Any, Any, None]]:
        from paygate_server.cdc.prune import run_scheduled

        settings = gateway.settings
        tasks = [gateway.relay.run_forever()] if settings.relay_enabled else []
        if settings.history_prune_interval_s > 0:
            tasks.append(run_scheduled(gateway.db, gateway.archive_store, settings))
        return tasks

    async def teardown(self, gateway: Gateway) -> None:
        if gateway.has("archive_store"):
            await gateway.archive_store.close()


extension = CdcExtension()
