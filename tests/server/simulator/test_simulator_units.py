"""Pure parts of the simulator: Luhn, brands, the test-card table, fault draws."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from paygate_server.simulator import cards
from paygate_server.simulator.faults import FaultConfig, FaultError, FaultInjector
from paygate_server.simulator.protocol import ChargeInput, rfc3339
from paygate_server.simulator.testing import TestCards

TODAY = dt.date(2025, 6, 15)


@pytest.mark.parametrize(
    "number",
    [v for k, v in vars(TestCards).items() if k.isupper()]
    + ["4111111111111111", "6011111111111117"],
)
def test_test_cards_pass_luhn(number: str) -> None:
    assert cards.luhn_valid(number)


@pytest.mark.parametrize("number", ["4242424242424241", "4111111111111112", "378282246310006"])
def test_luhn_rejects_altered_numbers(number: str) -> None:
    assert not cards.luhn_valid(number)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3566002020360505", "jcb"),
        ("36227206271667", "diners"),
        ("9999999999999995", "unknown"),
    ],
)
def test_brands(number: str, brand: str) -> None:
    assert cards.brand_of(number) == brand


def test_expiry_is_the_end_of_the_month() -> None:
    assert not cards.is_expired(6, 2025, TODAY)
    assert cards.is_expired(5, 2025, TODAY)
    assert cards.is_expired(12, 2024, TODAY)
    assert not cards.is_expired(1, 2026, TODAY)


def test_evaluate_order() -> None:
    assert cards.evaluate("4242424242424241", 12, 2030, TODAY).decline_code == "invalid_number"
    assert cards.evaluate(TestCards.VISA, 1, 2020, TODAY).decline_code == "expired_card"
    # An expired test card is an expired card, whatever its test behaviour.
    assert cards.evaluate(TestCards.PROCESSING_ERROR, 1, 2020, TODAY).action is cards.Action.DECLINE
    assert cards.evaluate(TestCards.PROCESSING_ERROR, 1, 2030, TODAY).action is cards.Action.ERROR
    assert cards.evaluate(TestCards.DELAYED_APPROVAL, 1, 2030, TODAY).delay_s == 1.5
    assert cards.evaluate("4111111111111111", 1, 2030, TODAY).action is cards.Action.APPROVE


def test_charge_input_repr_hides_the_number() -> None:
    charge = ChargeInput("r", "pi", "mer", 1, "USD", "4242424242424242", 12, 2030)
    assert "4242424242424242" not in repr(charge)


def test_rfc3339() -> None:
    moment = dt.datetime(2025, 1, 2, 3, 4, 5, 678900, tzinfo=dt.UTC)
    assert rfc3339(moment) == "2025-01-02T03:04:05.678Z"


def test_fault_config_validation() -> None:
    assert FaultConfig.from_json({}) == FaultConfig()
    assert FaultConfig.from_json({"errorRate": 1}).error_rate == 1.0
    with pytest.raises(FaultError) as info:
        FaultConfig.from_json({"timeoutRate": 2})
    assert info.value.param == "timeoutRate"


def test_fault_draws_are_seeded_and_exclusive() -> None:
    config = FaultConfig(error_rate=0.3, timeout_rate=0.3, drop_response_rate=0.3, jitter_ms=50)
    draws = []
    for _ in range(2):
        injector = FaultInjector(random.Random(99))
        injector.config = config
        draws.append([injector.draw() for _ in range(500)])
    assert draws[0] == draws[1]
    for decision in draws[0]:
        assert sum((decision.error, decision.timeout, decision.drop)) <= 1
        assert 0.0 <= decision.delay_s <= 0.05
    errors = sum(d.error for d in draws[0])
    assert 100 < errors < 200  # ~30 % of 500


def test_no_faults_by_default() -> None:
    injector = FaultInjector(random.Random(1))
    assert all(
        d.delay_s == 0 and not (d.error or d.timeout or d.drop)
        for d in (injector.draw() for _ in range(100))
    )
