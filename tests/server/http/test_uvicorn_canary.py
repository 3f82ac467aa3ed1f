"""Canary for the one uvicorn internal the servers lean on: ``paygate_server.headerguard``
(and through it ``http.protocol``) subclasses uvicorn's httptools protocol and overrides its
parser callbacks. ``pyproject.toml`` pins uvicorn below the next minor; when that pin is
raised, this says at once whether the hooks are still there with the same shape, before the
behavioural tests (``test_head_limits``, ``test_protocol``) fail in less obvious ways."""
from __future__ import annotations

import importlib.metadata
import inspect

from packaging.requirements import Requirement
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from paygate_server.headerguard import GuardedHttpToolsProtocol

# The methods GuardedHttpToolsProtocol overrides and calls through to, with their parameters.
HOOKS = {
    "connection_made": ["transport"],
    "connection_lost": ["exc"],
    "data_received": ["data"],
    "on_message_begin": [],
    "on_url": ["url"],
    "on_header": ["name", "value"],
    "on_headers_complete": [],
    "send_400_response": ["msg"],
}


def test_uvicorns_protocol_still_has_the_hooks_the_head_guard_overrides() -> None:
    for name, params in HOOKS.items():
        method = getattr(HttpToolsProtocol, name, None)
        assert callable(method), f"uvicorn's HttpToolsProtocol lost {name}"
        assert list(inspect.signature(method).parameters)[1:] == params, name
        assert name in vars(GuardedHttpToolsProtocol), f"the canary lists {name}, the guard no longer overrides it"


def test_the_installed_uvicorn_is_inside_the_pinned_range() -> None:
    pin = next(Requirement(r) for r in importlib.metadata.requires("paygate") or []
               if Requirement(r).name == "uvicorn")
    assert pin.specifier.contains(importlib.metadata.version("uvicorn"))
    assert any(spec.operator == "<" for spec in pin.specifier), "uvicorn needs an upper bound"
