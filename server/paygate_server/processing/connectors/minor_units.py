"""A processor's own minor units: where they differ from ISO 4217's, and the amounts it
cannot take.

The gateway keeps every amount in the currency's ISO 4217 minor unit
(:data:`paygate_server.currencies.EXPONENTS`). A processor may count a currency in another
unit, or refuse some amounts of it; a connector converts on the way out and on the way back
with :meth:`MinorUnits.to_processor` / :meth:`MinorUnits.from_processor`, which are exact or
raise :class:`Unrepresentable` — never a rounding, never a float. An amount that the
processor cannot take is refused before anything is sent (docs/processors.md, "Amounts and
currencies").

:data:`STRIPE` (docs.stripe.com/currencies): MGA is zero-decimal at Stripe (ISO: two
decimals); ISK and UGX are zero-decimal but, "for backwards compatibility", sent with two
decimals, so an amount is ×100 on the wire and a multiple of 100 coming back; the
three-decimal BHD, JOD, KWD, OMR and TND must end in 0 ("round to the nearest ten": the
gateway refuses instead of rounding). HUF and TWD are two-decimal for charges (only payouts
are whole units, which the gateway does not make).

:data:`ADYEN` (docs.adyen.com/development-resources/currency-codes): "for CLP, CVE, IDR and
ISK the standard has a different number of decimals": CLP and ISK two, CVE and IDR none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from paygate_server.currencies import EXPONENTS, format_minor

__all__ = ["ADYEN", "STRIPE", "MinorUnits", "Unrepresentable"]

_TEN_TO = (1, 10, 100, 1000, 10_000)  # exponents are 0 to 4: every difference has its factor


class Unrepresentable(ValueError):
    """An amount the processor cannot take, or one it stated that is no whole number of the
    gateway's minor units; ``str()`` says why, for a person."""


@dataclass(frozen=True, slots=True)
class MinorUnits:
    processor: str
    exponents: Mapping[str, int] = field(default_factory=dict)  # only where they differ from ISO's
    steps: Mapping[str, int] = field(default_factory=dict)  # the processor's amount must be a multiple
    maximum: int | None = None  # the largest amount the processor takes, in its units

    def _exponents(self, currency: str) -> tuple[int, int]:
        iso = EXPONENTS.get(currency)
        if iso is None:
            raise Unrepresentable(f"{currency[:10]!r} is not a currency the gateway takes")
        return iso, self.exponents.get(currency, iso)

    def to_processor(self, amount: int, currency: str) -> int:
        """``amount`` (the gateway's minor units) in the processor's; Unrepresentable if
        the processor cannot take it exactly."""
        iso, theirs = self._exponents(currency)
        if theirs >= iso:
            sent = amount * _TEN_TO[theirs - iso]
        else:
            factor = _TEN_TO[iso - theirs]
            if amount % factor:
                raise Unrepresentable(f"{self.processor} takes {currency} in whole units only: "
                                      f"{format_minor(amount, currency)} {currency} cannot be sent")
            sent = amount // factor
        step = self.steps.get(currency, 1)
        if sent % step:
            raise Unrepresentable(f"{self.processor} takes {currency} amounts in steps of "
                                  f"{format_minor(step, currency)} only: {format_minor(amount, currency)} "
                                  f"{currency} cannot be sent")
        if self.maximum is not None and sent > self.maximum:
            raise Unrepresentable(f"{self.processor} takes at most {self.maximum} in its {currency} units: "
                                  f"{format_minor(amount, currency)} {currency} cannot be sent")
        return sent

    def from_processor(self, amount: int, currency: str) -> int:
        """An amount the processor stated (its minor units) in the gateway's; Unrepresentable
        if it is no whole number of them (it cannot be one the gateway sent)."""
        iso, theirs = self._exponents(currency)
        if iso >= theirs:
            return amount * _TEN_TO[iso - theirs]
        factor = _TEN_TO[theirs - iso]
        if amount % factor:
            raise Unrepresentable(f"{self.processor} stated {amount} in its {currency} units: "
                                  "not a whole number of the gateway's")
        return amount // factor


_THREE_DECIMALS_IN_TENS = {code: 10 for code in ("BHD", "JOD", "KWD", "OMR", "TND")}
# Stripe's amounts have at most eight digits ("99999999"), whatever the currency: an ISK or
# UGX amount is sent ×100, so the gateway's largest does not fit.
STRIPE = MinorUnits("Stripe", exponents={"MGA": 0, "ISK": 2, "UGX": 2}, steps=_THREE_DECIMALS_IN_TENS,
                    maximum=99_999_999)
ADYEN = MinorUnits("Adyen", exponents={"CLP": 2, "ISK": 2, "CVE": 0, "IDR": 0})
