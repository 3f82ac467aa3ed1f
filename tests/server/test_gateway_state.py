"""The typed Gateway: named service slots, extensions as declared objects in a checked
order, and the processor connector wrapped once and injected into every service."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from paygate_server.app import EXTENSIONS, build_gateway
from paygate_server.cdc import CdcExtension
from paygate_server.extensions import Extension, ExtensionOrderError
from paygate_server.observability import InstrumentedConnector, ObservabilityExtension
from paygate_server.processing.connectors import Connector
from paygate_server.state import Gateway, ServiceMissing
from paygate_server.vault.extension import VaultExtension
from paygate_server.webhooks import WebhooksExtension
from tests.support.app import running_gateway
from tests.support.app import test_settings as make_settings


@pytest.mark.parametrize("extensions, message", [
    ((WebhooksExtension(), CdcExtension()),
     "extension 'webhooks' requires 'relay': extension 'cdc' provides it but is listed after it"),
    ((WebhooksExtension(),), "extension 'webhooks' requires 'relay': no listed extension provides it"),
    ((CdcExtension(), CdcExtension()), "extensions 'cdc' and 'cdc' both provide 'relay'"),
])
async def test_a_misordered_extension_list_fails_at_start_before_anything_is_opened(
        database_url: str, tmp_path: Path, extensions: tuple[Extension, ...], message: str) -> None:
    data_dir = tmp_path / "data"
    with pytest.raises(ExtensionOrderError) as caught:
        await build_gateway(make_settings(database_url, data_dir), extensions)
    assert str(caught.value) == message
    assert not data_dir.exists()  # refused before the data dir, the database or a key was touched


async def test_an_extension_naming_no_slot_or_not_filling_its_own_is_refused(database_url: str, tmp_path: Path) -> None:
    class Typo(Extension):
        name = "typo"
        requires: ClassVar[tuple[str, ...]] = ("relays",)

    with pytest.raises(ExtensionOrderError, match="'relays', which is not a Gateway service slot"):
        await build_gateway(make_settings(database_url, tmp_path / "a"), (Typo(),))

    class Lazy(Extension):
        name = "lazy"
        provides: ClassVar[tuple[str, ...]] = ("vault",)

    with pytest.raises(ExtensionOrderError, match="'lazy' declares vault but its setup did not fill them"):
        gateway = await build_gateway(make_settings(database_url, tmp_path / "b"), (Lazy(),))
        await gateway.db.dispose()


async def test_the_shipped_order_sets_up_every_declared_slot(database_url: str, tmp_path: Path) -> None:
    gateway = await build_gateway(make_settings(database_url, tmp_path))
    try:
        for extension in EXTENSIONS:
            for slot in extension.provides:
                assert gateway.has(slot), slot
        assert {e.name for e in EXTENSIONS} == {"cdc", "webhooks", "observability", "vault"}
        # The one consumer webhooks registers is really on the relay cdc built before it.
        assert "webhooks" in {c.name for c in gateway.relay.consumers}
    finally:
        for extension in EXTENSIONS:
            await extension.teardown(gateway)
        await gateway.db.dispose()


async def test_an_unfilled_slot_is_a_clear_error_and_the_gateway_works_without_it(
        database_url: str, tmp_path: Path) -> None:
    async with running_gateway(make_settings(database_url, tmp_path), extensions=()) as gw:
        gateway = gw.gateway
        assert not gateway.has("vault") and gateway.has("processing")
        with pytest.raises(ServiceMissing, match=r"gateway\.vault is not set: it is provided by the vault extension"):
            gateway.vault  # noqa: B018
        with pytest.raises(AttributeError, match="no service slot 'vaults'"):
            gateway.has("vaults")
        assert not hasattr(gateway, "services")
        # Without the vault, a token is simply not valid (SPEC §2 code, not a 500).
        shop = await gw.new_merchant()
        intent = await shop.create_intent()
        r = await shop.post("/api/v1/payment/process", {
            "paymentIntentId": intent["paymentIntentId"], "paymentMethod": "card",
            "paymentDetails": {"token": "tok_" + "a" * 24}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "token_invalid", r.text
        # No metrics extension: the services hold the plain connector, not a wrapper.
        assert not isinstance(gateway.connector, InstrumentedConnector)
        assert gateway.processing.connector is gateway.connector


async def test_the_connector_is_wrapped_once_and_every_service_gets_that_object(
        database_url: str, tmp_path: Path) -> None:
    wrapped: list[Connector] = []

    class Counting(Extension):
        name = "counting"

        def wrap_connector(self, connector: Connector) -> Connector:
            wrapped.append(connector)
            return connector

    observability = ObservabilityExtension()
    gateway = await build_gateway(make_settings(database_url, tmp_path), (observability, Counting(), VaultExtension()))
    try:
        # Wrapped in list order, once each: the counter saw the metrics wrapper.
        assert len(wrapped) == 1 and isinstance(wrapped[0], InstrumentedConnector)
        assert gateway.connector is wrapped[0]
        assert gateway.processing.connector is gateway.connector
        assert gateway.refunds.connector is gateway.connector
        assert gateway.reconciler.connector is gateway.connector
    finally:
        await observability.teardown(gateway)
        await gateway.db.dispose()


def test_every_slot_an_extension_may_name_is_declared_on_gateway() -> None:
    for extension in EXTENSIONS:
        assert set(extension.requires) | set(extension.provides) <= Gateway.slot_names()
