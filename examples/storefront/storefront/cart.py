"""The cart: SKUs and quantities, kept in a signed cookie; totals in integer cents."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from storefront.catalog import Product, get_product

__all__ = [
    "FREE_SHIPPING_FROM",
    "MAX_LINES",
    "MAX_QUANTITY",
    "SHIPPING_FEE",
    "Cart",
    "CartLine",
    "Totals",
    "compute_totals",
]

MAX_QUANTITY = 10
MAX_LINES = 20
SHIPPING_FEE = 500  # $5.00 flat …
FREE_SHIPPING_FROM = 5000  # … free from a $50.00 subtotal


@dataclass(frozen=True)
class CartLine:
    product: Product
    quantity: int

    @property
    def total(self) -> int:
        return self.product.price * self.quantity


@dataclass(frozen=True)
class Totals:
    subtotal: int
    shipping: int
    total: int
    item_count: int


def compute_totals(lines: Iterable[CartLine]) -> Totals:
    lines = list(lines)
    subtotal = sum(line.total for line in lines)
    count = sum(line.quantity for line in lines)
    shipping = 0 if subtotal == 0 or subtotal >= FREE_SHIPPING_FROM else SHIPPING_FEE
    return Totals(subtotal=subtotal, shipping=shipping, total=subtotal + shipping, item_count=count)


class Cart:
    """SKU → quantity, in the order items were first added."""

    def __init__(self, items: dict[str, int] | None = None) -> None:
        self._items: dict[str, int] = {}
        for sku, quantity in (items or {}).items():
            self.set(sku, quantity)

    @property
    def items(self) -> dict[str, int]:
        return dict(self._items)

    def add(self, sku: str, quantity: int = 1) -> None:
        if quantity < 1:
            raise ValueError("add at least one")
        self.set(sku, self._items.get(sku, 0) + quantity)

    def set(self, sku: str, quantity: int) -> None:
        """Quantity 0 removes the line; quantities are capped at MAX_QUANTITY. Unknown
        products are ignored (a product may leave the catalog while it sits in a cart)."""
        if get_product(sku) is None or isinstance(quantity, bool) or not isinstance(quantity, int):
            return
        if quantity <= 0:
            self._items.pop(sku, None)
            return
        if sku not in self._items and len(self._items) >= MAX_LINES:
            return
        self._items[sku] = min(quantity, MAX_QUANTITY)

    def lines(self) -> list[CartLine]:
        result = []
        for sku, quantity in self._items.items():
            product = get_product(sku)
            if product is not None:
                result.append(CartLine(product, quantity))
        return result

    def totals(self) -> Totals:
        return compute_totals(self.lines())

    def __len__(self) -> int:
        return sum(self._items.values())

    def to_data(self) -> dict[str, Any]:
        return {"items": [[sku, quantity] for sku, quantity in self._items.items()]}

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> Cart:
        cart = cls()
        entries = (data or {}).get("items")
        if isinstance(entries, list):
            for entry in entries[:MAX_LINES]:
                if (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                        and isinstance(entry[1], int)):
                    cart.set(entry[0], entry[1])
        return cart
