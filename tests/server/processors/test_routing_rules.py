"""Routing rules (SPEC §7), case by case: what each condition matches, that the first
matching rule wins, that the last (and only the last) rule has no condition, and the one
line each refusal says."""
from __future__ import annotations

from typing import Any

import pytest

from paygate_server.processors.routing import (
    MAX_ACCOUNTS,
    MAX_RULES,
    Payment,
    Rule,
    RulesInvalid,
    choose,
    parse_rules,
    render_rules,
)

A, B, C = "pa_aaaaaaaaaaaaaaaaaaaa", "pa_bbbbbbbbbbbbbbbbbbbb", "pa_cccccccccccccccccccc"
EUR_VISA = Payment(currency="EUR", brand="visa", amount=1000, capture_method="automatic")


def pay(currency: str = "EUR", brand: str = "visa", amount: int = 1000, capture: str = "automatic") -> Payment:
    return Payment(currency=currency, brand=brand, amount=amount, capture_method=capture)


def routed(when: dict[str, Any], payment: Payment) -> tuple[str, ...]:
    """The accounts for ``payment`` under [rule with ``when`` → A, otherwise → B]."""
    return choose(parse_rules([{"when": when, "use": [A]}, {"use": [B]}]), payment)


# ---- each condition -----------------------------------------------------------------------

def test_currency_matches_listed_currencies() -> None:
    assert routed({"currency": ["EUR", "GBP"]}, pay(currency="GBP")) == (A,)
    assert routed({"currency": ["EUR", "GBP"]}, pay(currency="USD")) == (B,)


def test_currency_is_case_insensitive_in_the_rules_and_may_be_one_string() -> None:
    assert routed({"currency": "eur"}, pay(currency="EUR")) == (A,)


def test_brand_matches_listed_brands() -> None:
    assert routed({"brand": ["mastercard", "amex"]}, pay(brand="amex")) == (A,)
    assert routed({"brand": ["mastercard", "amex"]}, pay(brand="visa")) == (B,)


def test_brand_in_the_rules_is_lowered() -> None:
    assert routed({"brand": ["VISA"]}, pay(brand="visa")) == (A,)


def test_amount_min_is_inclusive() -> None:
    assert routed({"amountMin": 5000}, pay(amount=5000)) == (A,)
    assert routed({"amountMin": 5000}, pay(amount=4999)) == (B,)


def test_amount_max_is_inclusive() -> None:
    assert routed({"amountMax": 5000}, pay(amount=5000)) == (A,)
    assert routed({"amountMax": 5000}, pay(amount=5001)) == (B,)


def test_amount_range_and_zero_bounds() -> None:
    assert routed({"amountMin": 0, "amountMax": 0}, pay(amount=0)) == (A,)
    assert routed({"amountMin": 100, "amountMax": 200}, pay(amount=150)) == (A,)
    assert routed({"amountMin": 100, "amountMax": 200}, pay(amount=99)) == (B,)
    assert routed({"amountMin": 100, "amountMax": 200}, pay(amount=201)) == (B,)


def test_capture_method_as_one_string_or_a_list() -> None:
    assert routed({"captureMethod": "manual"}, pay(capture="manual")) == (A,)
    assert routed({"captureMethod": "manual"}, pay(capture="automatic")) == (B,)
    assert routed({"captureMethod": ["manual", "automatic"]}, pay(capture="automatic")) == (A,)


def test_every_condition_of_a_rule_must_match() -> None:
    when = {"currency": ["EUR"], "brand": ["visa"], "amountMax": 1000, "captureMethod": "automatic"}
    assert routed(when, EUR_VISA) == (A,)
    assert routed(when, pay(brand="mastercard")) == (B,)
    assert routed(when, pay(currency="USD")) == (B,)
    assert routed(when, pay(amount=1001)) == (B,)
    assert routed(when, pay(capture="manual")) == (B,)


# ---- order ----------------------------------------------------------------------------------

def test_first_matching_rule_wins_even_when_a_later_one_is_more_specific() -> None:
    rules = parse_rules([{"when": {"currency": ["EUR"]}, "use": [A]},
                         {"when": {"currency": ["EUR"], "brand": ["visa"]}, "use": [B]},
                         {"use": [C]}])
    assert choose(rules, EUR_VISA) == (A,)


def test_a_later_rule_applies_when_the_earlier_ones_do_not_match() -> None:
    rules = parse_rules([{"when": {"currency": ["USD"]}, "use": [A]},
                         {"when": {"brand": ["visa"]}, "use": [B]},
                         {"use": [C]}])
    assert choose(rules, EUR_VISA) == (B,)
    assert choose(rules, pay(brand="amex")) == (C,)


def test_the_accounts_keep_their_order_the_failover_order() -> None:
    assert choose(parse_rules([{"use": [C, A, B]}]), EUR_VISA) == (C, A, B)


def test_one_unconditional_rule_takes_everything() -> None:
    rules = parse_rules([{"use": [A]}])
    assert choose(rules, pay(currency="JPY", brand="unknown", amount=0, capture="manual")) == (A,)


def test_an_empty_when_is_no_condition() -> None:
    assert parse_rules([{"when": {}, "use": [A]}]) == (Rule(use=(A,)),)


# ---- render_rules: the stored form, read back the same ------------------------------------------

def test_render_is_canonical_and_parses_back_to_the_same_rules() -> None:
    document = [{"when": {"currency": ["gbp", "EUR"], "brand": ["Visa", "amex"], "amountMin": 1, "amountMax": 9,
                          "captureMethod": "manual"}, "use": [B, A]},
                {"when": {}, "use": [C]}]
    rendered = render_rules(parse_rules(document))
    assert rendered == [{"when": {"currency": ["EUR", "GBP"], "brand": ["amex", "visa"], "amountMin": 1,
                                  "amountMax": 9, "captureMethod": ["manual"]}, "use": [B, A]},
                        {"use": [C]}]
    assert parse_rules(rendered) == parse_rules(document)
    assert render_rules(parse_rules(rendered)) == rendered


# ---- every refusal, and its message ------------------------------------------------------

LAST = {"use": [C]}


@pytest.mark.parametrize(("document", "message"), [
    (None, "routing rules must be a non-empty JSON list of rules"),
    ({"use": [A]}, "routing rules must be a non-empty JSON list of rules"),
    ([], "routing rules must be a non-empty JSON list of rules"),
    ([{"use": [A]}] * (MAX_RULES + 1), f"at most {MAX_RULES} routing rules"),
    (["pa_x"], 'rule 1 must be an object with "use" (and "when")'),
    ([{"use": [A], "if": {}}], "rule 1 has an unknown field 'if'"),
    ([{"when": {}}], f'rule 1: "use" must list 1 to {MAX_ACCOUNTS} processor accounts (pa_…)'),
    ([{"use": []}], f'rule 1: "use" must list 1 to {MAX_ACCOUNTS} processor accounts (pa_…)'),
    ([{"use": A}], f'rule 1: "use" must list 1 to {MAX_ACCOUNTS} processor accounts (pa_…)'),
    ([{"use": ["acct_1"]}], f'rule 1: "use" must list 1 to {MAX_ACCOUNTS} processor accounts (pa_…)'),
    ([{"use": [f"pa_{i}" for i in range(MAX_ACCOUNTS + 1)]}],
     f'rule 1: "use" must list 1 to {MAX_ACCOUNTS} processor accounts (pa_…)'),
    ([{"use": [A, A]}], 'rule 1: "use" names an account twice'),
    ([{"when": ["EUR"], "use": [A]}, LAST], 'rule 1: "when" must be an object'),
    ([{"when": {"country": ["DE"]}, "use": [A]}, LAST],
     "rule 1: unknown condition 'country' (conditions: currency, brand, amountMin, amountMax, captureMethod)"),
    ([{"when": {"currency": []}, "use": [A]}, LAST], "rule 1: currency must be a non-empty list of strings"),
    ([{"when": {"currency": [1]}, "use": [A]}, LAST], "rule 1: currency must be a non-empty list of strings"),
    ([{"when": {"currency": ["EURO"]}, "use": [A]}, LAST],
     "rule 1: currency 'EURO' is not an ISO 4217 currency the gateway takes"),
    ([{"when": {"brand": [""]}, "use": [A]}, LAST], "rule 1: brand must be a non-empty list of strings"),
    ([{"when": {"brand": ["vsia"]}, "use": [A]}, LAST],
     "rule 1: unknown brand 'vsia' (brands: visa, mastercard, amex, discover, jcb, diners, unionpay, unknown)"),
    ([{"when": {"amountMin": -1}, "use": [A]}, LAST], "rule 1: amountMin must be a non-negative integer (minor units)"),
    ([{"when": {"amountMin": 1.5}, "use": [A]}, LAST],
     "rule 1: amountMin must be a non-negative integer (minor units)"),
    ([{"when": {"amountMax": True}, "use": [A]}, LAST],
     "rule 1: amountMax must be a non-negative integer (minor units)"),
    ([{"when": {"amountMax": "100"}, "use": [A]}, LAST],
     "rule 1: amountMax must be a non-negative integer (minor units)"),
    # Past 64 bits: once accepted, and a traceback when the rules were written as JSON.
    ([{"when": {"amountMax": 2**64}, "use": [A]}, LAST], f"rule 1: amountMax must be at most {2**64 - 1} (minor units)"),
    ([{"when": {"amountMin": 10**30}, "use": [A]}, LAST], f"rule 1: amountMin must be at most {2**64 - 1} (minor units)"),
    ([{"when": {"amountMin": 2, "amountMax": 1}, "use": [A]}, LAST], "rule 1: amountMin is greater than amountMax"),
    ([{"when": {"captureMethod": "later"}, "use": [A]}, LAST], "rule 1: captureMethod must be automatic or manual"),
    ([{"when": {"captureMethod": []}, "use": [A]}, LAST],
     "rule 1: captureMethod must be a non-empty list of strings"),
    ([{"when": {"currency": ["EUR"]}, "use": [A]}],
     'the last rule must have no "when": every payment needs somewhere to go'),
    ([{"use": [A]}, {"when": {"currency": ["EUR"]}, "use": [B]}, LAST],
     'rule 1 has no "when", so the rules after it never apply: only the last rule may have no condition'),
], ids=lambda v: str(v)[:60] if isinstance(v, str) else None)
def test_refusal(document: Any, message: str) -> None:
    with pytest.raises(RulesInvalid) as info:
        parse_rules(document)
    assert str(info.value) == message


def test_the_first_problem_is_named() -> None:
    with pytest.raises(RulesInvalid, match="^rule 2: "):
        parse_rules([{"use": [A], "when": {"currency": "EUR"}}, {"when": {"brand": ["x"]}, "use": [B]},
                     {"when": {"currency": "??"}, "use": [B]}, LAST])
