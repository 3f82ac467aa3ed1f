"""Tidewater Coffee: the sample shop that sells through paygate.

It uses only the merchant SDK (``import paygate``) and the gateway's ``checkout.js`` —
never the gateway's own code — exactly as a merchant's application would.
"""
from __future__ import annotations

from storefront.app import create_app, create_app_from_env
from storefront.config import StorefrontConfig

__all__ = ["StorefrontConfig", "create_app", "create_app_from_env"]
