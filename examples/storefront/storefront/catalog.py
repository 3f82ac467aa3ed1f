"""The shop's catalog: a handful of products, prices in cents."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOG", "CURRENCY", "Product", "get_product"]

CURRENCY = "USD"


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    blurb: str
    price: int  # minor units (cents)
    art: str  # which illustration the templates draw
    tint: str  # the illustration's accent colour
    #: Made to order: not in the warehouse at checkout. An order with such an item is
    #: "ship then capture": the card is authorized at checkout, charged when it ships.
    ships_later: bool = False


CATALOG: tuple[Product, ...] = (
    Product("tw-house-340", "House Blend", "Chocolate, hazelnut, a little citrus. Whole bean, 340 g.",
            1800, "bag", "#9a5b34"),
    Product("tw-yirga-340", "Ethiopia Yirgacheffe", "Jasmine, bergamot and peach. Light roast, 340 g.",
            2200, "bag", "#c0892f"),
    Product("tw-decaf-340", "Swiss Water Decaf", "Caramel and cocoa, without the caffeine. 340 g.",
            1900, "bag", "#56705d"),
    Product("tw-mug-12", "Stoneware Mug", "Hand-glazed, 350 ml, dishwasher safe.",
            2400, "mug", "#3f6f8f"),
    Product("tw-dripper-02", "Ceramic Dripper", "The classic cone for one to two cups.",
            3200, "dripper", "#b8573f"),
    Product("tw-filters-100", "Paper Filters", "Size 02, oxygen-bleached. Pack of 100.",
            600, "filters", "#8c7a5b"),
    Product("tw-potter-set", "Potter's Pour-over Set", "Hand-thrown to order: dripper, mug and server. "
            "Ships in about two weeks; your card is charged when it ships.",
            8600, "dripper", "#6d4c7d", ships_later=True),
)

_BY_SKU = {product.sku: product for product in CATALOG}


def get_product(sku: str) -> Product | None:
    return _BY_SKU.get(sku)
