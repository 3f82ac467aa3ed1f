"""The gateway's process-wide state, built once by the app factory's lifespan.

No import-time singletons: everything a request needs hangs off :class:`Gateway`, reached
as ``request.state.gateway``. Every service is a named, typed field: the ones the core
needs to exist are constructor arguments; the ones built *with* the gateway (they hold it)
or by an extension are :class:`Slot` s, filled once at start-up (``app.build_gateway``).
Reading a slot nobody filled raises :class:`ServiceMissing` naming it, never ``None`` that
fails three calls later.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar, overload

from paygate_server.auth import Authenticator
from paygate_server.config import Settings
from paygate_server.crypto import MasterKey
from paygate_server.readiness import Readiness
from paygate_server.realtime import ChangeNotifier
from paygate_server.storage import Database, open_payment_store
from paygate_server.storage.ping import ping
from paygate_server.storage.port import PaymentStore

if TYPE_CHECKING:
    from paygate_server.cards.keystore import CardKeyStore
    from paygate_server.cdc.relay import Relay
    from paygate_server.cdc.store import ObjectStore
    from paygate_server.observability.scrape import DatabaseGauges
    from paygate_server.processing.connectors import Connector
    from paygate_server.processing.reconciler import Reconciler
    from paygate_server.processing.service import ProcessingService
    from paygate_server.processors.registry import ProcessorRoutes
    from paygate_server.refunds.service import RefundService
    from paygate_server.vault.service import VaultService
    from paygate_server.webhooks.dispatcher import Dispatcher

__all__ = ["Gateway", "ServiceMissing", "Slot"]

T = TypeVar("T")


class ServiceMissing(LookupError):
    """A gateway slot was read before anything filled it (a missing or misordered extension)."""


class Slot(Generic[T]):
    """A typed gateway field that is filled after construction, at most by its ``filled_by``."""

    def __init__(self, filled_by: str) -> None:
        self.filled_by = filled_by
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, gateway: None, owner: type) -> Slot[T]: ...
    @overload
    def __get__(self, gateway: object, owner: type) -> T: ...
    def __get__(self, gateway: object | None, owner: type) -> Slot[T] | T:
        if gateway is None:
            return self
        try:
            value: T = vars(gateway)[self.name]
        except KeyError:
            raise ServiceMissing(f"gateway.{self.name} is not set: it is provided by {self.filled_by}, "
                                 "which has not run in this process") from None
        return value

    def __set__(self, gateway: object, value: T) -> None:
        vars(gateway)[self.name] = value


@dataclass(eq=False)
class Gateway:
    settings: Settings
    db: Database
    master_key: MasterKey
    authenticator: Authenticator
    notifier: ChangeNotifier
    card_keys: CardKeyStore
    # The one connector object every domain calls, wrapped by extensions (metrics) before
    # any service got it: built once, injected, never swapped afterwards.
    connector: Connector
    # Where each payment goes: the merchant's processor accounts (their connectors wrapped
    # like ``connector``) and routing, or ``connector`` for a merchant with none.
    processors: ProcessorRoutes
    fingerprint_key: bytes  # HMAC key of card fingerprints, derived once from the master key
    # The payment core's storage port, on the gateway's database.
    payments: PaymentStore = field(init=False)

    # GET /readyz's view of the database (one per process, shared by its checks).
    readiness: Readiness = field(init=False)

    def __post_init__(self) -> None:
        self.payments = open_payment_store(self.db)
        db, bound = self.db, self.settings.ready_timeout_s
        self.readiness = Readiness(lambda: ping(db, bound), timeout_s=bound, cache_s=self.settings.ready_cache_s)

    # Slots are plain class attributes, not dataclass fields: no constructor argument.
    # Core services: they hold the gateway, so they are set right after it is built.
    processing = Slot["ProcessingService"]("app.build_gateway")
    refunds = Slot["RefundService"]("app.build_gateway")
    reconciler = Slot["Reconciler"]("app.build_gateway")
    # Provided by extensions (each one declares them in its ``provides``).
    relay = Slot["Relay"]("the cdc extension")
    archive_store = Slot["ObjectStore"]("the cdc extension")
    webhook_dispatcher = Slot["Dispatcher"]("the webhooks extension")
    metrics_db = Slot["DatabaseGauges"]("the observability extension")
    vault = Slot["VaultService"]("the vault extension")

    def has(self, name: str) -> bool:
        """Whether slot ``name`` is filled (for a domain that works without an extension)."""
        if not isinstance(getattr(type(self), name, None), Slot):
            raise AttributeError(f"Gateway has no service slot {name!r}")
        return name in vars(self)

    @classmethod
    def slot_names(cls) -> frozenset[str]:
        return frozenset(name for name, value in vars(cls).items() if isinstance(value, Slot))
