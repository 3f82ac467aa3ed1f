"""Routing rules (SPEC §7): which processor accounts a payment goes to, in order.

A merchant's rules are an ordered list; the first rule whose conditions all match the
payment gives its accounts (the first is tried first; the next ones are its failover).
Conditions: ``currency`` and ``brand`` (lists), ``amountMin``/``amountMax`` (minor units,
inclusive), ``captureMethod`` (a list, or one string); a currency or brand the gateway
does not know is refused (a typo would make a rule that never matches). The last rule
must have no condition, so that every payment has somewhere to go: a merchant never finds
out in production that a currency nobody thought of cannot be paid; and only the last:
the rules after an unconditional one could never apply.

Pure functions: parsing a rule list (with a one-line reason for the first thing wrong)
and choosing the accounts for a payment.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paygate_server import jsoncodec
from paygate_server.cards import BRANDS
from paygate_server.currencies import is_currency

__all__ = ["Payment", "Rule", "RulesInvalid", "choose", "parse_rules", "render_rules", "rule_text"]

_CONDITIONS = ("currency", "brand", "amountMin", "amountMax", "captureMethod")
_CAPTURE_METHODS = ("automatic", "manual")
MAX_RULES = 100
MAX_ACCOUNTS = 10
# What jsoncodec writes: the rules are stored as its JSON, while the file is read by the
# standard library, whose integers have no bound (10**30 was a traceback). No lower: stored
# rules are parsed again, and any it could write must stay valid.
MAX_AMOUNT = jsoncodec.INT_MAX


class RulesInvalid(ValueError):
    """A rule list that cannot be stored; the text names the first problem."""


@dataclass(frozen=True, slots=True)
class Payment:
    """What routing looks at."""

    currency: str  # upper case
    brand: str  # lower case: visa, mastercard, amex, …
    amount: int
    capture_method: str


@dataclass(frozen=True, slots=True)
class Rule:
    use: tuple[str, ...]
    currency: frozenset[str] | None = None
    brand: frozenset[str] | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    capture_method: frozenset[str] | None = None

    def matches(self, payment: Payment) -> bool:
        return ((self.currency is None or payment.currency in self.currency)
                and (self.brand is None or payment.brand in self.brand)
                and (self.amount_min is None or payment.amount >= self.amount_min)
                and (self.amount_max is None or payment.amount <= self.amount_max)
                and (self.capture_method is None or payment.capture_method in self.capture_method))

    @property
    def unconditional(self) -> bool:
        return (self.currency is None and self.brand is None and self.amount_min is None
                and self.amount_max is None and self.capture_method is None)


def _strings(where: str, value: Any, *, upper: bool = False) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise RulesInvalid(f"{where} must be a non-empty list of strings")
    return frozenset(v.upper() if upper else v.lower() for v in value)


def _amount(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RulesInvalid(f"{where} must be a non-negative integer (minor units)")
    if value > MAX_AMOUNT:
        raise RulesInvalid(f"{where} must be at most {MAX_AMOUNT} (minor units)")
    return value


def _rule(index: int, item: Any) -> Rule:
    where = f"rule {index + 1}"
    if not isinstance(item, dict):
        raise RulesInvalid(f"{where} must be an object with \"use\" (and \"when\")")
    extra = sorted(set(item) - {"when", "use"})
    if extra:
        raise RulesInvalid(f"{where} has an unknown field {extra[0]!r}")
    use = item.get("use")
    if (not isinstance(use, list) or not use or len(use) > MAX_ACCOUNTS
            or not all(isinstance(a, str) and a.startswith("pa_") for a in use)):
        raise RulesInvalid(f"{where}: \"use\" must list 1 to {MAX_ACCOUNTS} processor accounts (pa_…)")
    if len(set(use)) != len(use):
        raise RulesInvalid(f"{where}: \"use\" names an account twice")
    when = item.get("when", {})
    if not isinstance(when, dict):
        raise RulesInvalid(f"{where}: \"when\" must be an object")
    unknown = sorted(set(when) - set(_CONDITIONS))
    if unknown:
        raise RulesInvalid(f"{where}: unknown condition {unknown[0]!r} (conditions: {', '.join(_CONDITIONS)})")
    # A typo ("EURO", "Vsia") would make a rule that silently never matches: refused instead.
    currency = _strings(f"{where}: currency", when["currency"], upper=True) if "currency" in when else None
    unknown = sorted(c for c in currency or () if not is_currency(c))
    if unknown:
        raise RulesInvalid(f"{where}: currency {unknown[0]!r} is not an ISO 4217 currency the gateway takes")
    brand = _strings(f"{where}: brand", when["brand"]) if "brand" in when else None
    unknown = sorted((brand or set()) - set(BRANDS))
    if unknown:
        raise RulesInvalid(f"{where}: unknown brand {unknown[0]!r} (brands: {', '.join(BRANDS)})")
    capture = None
    if "captureMethod" in when:
        capture = _strings(f"{where}: captureMethod", when["captureMethod"])
        if not capture <= set(_CAPTURE_METHODS):
            raise RulesInvalid(f"{where}: captureMethod must be automatic or manual")
    rule = Rule(
        use=tuple(use),
        currency=currency,
        brand=brand,
        amount_min=_amount(f"{where}: amountMin", when["amountMin"]) if "amountMin" in when else None,
        amount_max=_amount(f"{where}: amountMax", when["amountMax"]) if "amountMax" in when else None,
        capture_method=capture,
    )
    if rule.amount_min is not None and rule.amount_max is not None and rule.amount_min > rule.amount_max:
        raise RulesInvalid(f"{where}: amountMin is greater than amountMax")
    return rule


def parse_rules(document: Any) -> tuple[Rule, ...]:
    """A rule list as stored (JSON already parsed); raises :class:`RulesInvalid`."""
    if not isinstance(document, list) or not document:
        raise RulesInvalid("routing rules must be a non-empty JSON list of rules")
    if len(document) > MAX_RULES:
        raise RulesInvalid(f"at most {MAX_RULES} routing rules")
    rules: list[Rule] = []
    for index, item in enumerate(document):
        if rules and rules[-1].unconditional:  # every payment stops there: this rule could never apply
            raise RulesInvalid(f"rule {index} has no \"when\", so the rules after it never apply: "
                               "only the last rule may have no condition")
        rules.append(_rule(index, item))
    if not rules[-1].unconditional:
        raise RulesInvalid("the last rule must have no \"when\": every payment needs somewhere to go")
    return tuple(rules)


def render_rules(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    """The rule list as the API and the CLI show it (the form :func:`parse_rules` reads)."""
    out: list[dict[str, Any]] = []
    for rule in rules:
        when: dict[str, Any] = {}
        if rule.currency is not None:
            when["currency"] = sorted(rule.currency)
        if rule.brand is not None:
            when["brand"] = sorted(rule.brand)
        if rule.amount_min is not None:
            when["amountMin"] = rule.amount_min
        if rule.amount_max is not None:
            when["amountMax"] = rule.amount_max
        if rule.capture_method is not None:
            when["captureMethod"] = sorted(rule.capture_method)
        out.append({**({"when": when} if when else {}), "use": list(rule.use)})
    return out


def choose(rules: Sequence[Rule], payment: Payment) -> tuple[str, ...]:
    """The accounts of the first rule that matches (the last one always does)."""
    for rule in rules:
        if rule.matches(payment):
            return rule.use
    return ()


def rule_text(rule: dict[str, Any]) -> str:
    """A rendered rule in one line, as ``paygate routing show`` prints it and the console shows it."""
    when = rule.get("when", {})
    conditions = [f"{name} {', '.join(map(str, value)) if isinstance(value, list) else value}"
                  for name, value in when.items()]
    return f"{'; '.join(conditions) or 'every other payment'} -> {', '.join(rule['use'])}"
