"""Processor connectors: the one interface through which the gateway reaches processors.

Adding a processor means adding one module beside ``simulator.py`` that implements
:class:`Connector` and exposes ``from_url(url, **options)``; :func:`connector_for_url`
finds it by the URL's scheme (``acme://…`` or ``acme+https://…`` → module ``acme``).
Plain ``http``/``https`` URLs speak the simulator's protocol.
"""

from __future__ import annotations

import importlib
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import base
from ._transport import keepable_id, processor_text
from .base import *  # noqa: F403 - the interface's names are the package's (base.__all__)
from .base import Connector, ConnectorKind
from .simulator import SimulatorConnector

__all__ = [*base.__all__, "SimulatorConnector", "KINDS", "connector_for_url", "connector_kind", "keepable_id",
           "processor_text"]

# The kinds of processor account (SPEC §7): each is the module of that name here.
KINDS = ("simulator", "stripe", "adyen")

_MODULE_NAME = re.compile(r"[a-z][a-z0-9_]*")


def connector_for_url(url: str, **options: Any) -> Connector:
    """The connector for a processor URL (``PAYGATE_PROCESSOR_URL``).

    ``http(s)://host`` → the simulator protocol; ``<name>+http(s)://host`` or
    ``<name>://…`` → ``paygate_server.processing.connectors.<name>.from_url(url)``, where
    the URL handed over has the ``<name>+`` prefix removed.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return SimulatorConnector(url, **options)
    name, plus, transport_scheme = scheme.partition("+")
    if plus:
        url = urlunsplit((transport_scheme, *parts[1:]))
    if not _MODULE_NAME.fullmatch(name) or name == "base":
        raise ValueError(f"unsupported processor URL scheme {scheme!r}")
    module = _connector_module(name, f"no connector for processor URL scheme {scheme!r}")
    factory = getattr(module, "from_url", None)
    if factory is None:
        raise ValueError(f"connector module {name!r} has no from_url()")
    connector: Connector = factory(url, **options)
    return connector


def connector_kind(name: str) -> ConnectorKind:
    """The kind of processor account called ``name``; ValueError if there is none."""
    if name not in KINDS:
        raise ValueError(f"unknown processor kind {name!r} (kinds: {', '.join(KINDS)})")
    kind: ConnectorKind = _connector_module(name, f"processor kind {name!r} is not available in this "
                                                  "installation").KIND
    return kind


def _connector_module(name: str, missing: str) -> Any:
    """The connector module ``name`` of this package; ValueError(``missing``) if there is none
    (an import error inside an existing module is raised as it is)."""
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise ValueError(missing) from None
