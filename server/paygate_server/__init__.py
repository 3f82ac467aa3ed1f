"""paygate server: the gateway's API, checkout routes, processing and background workers.

Public entry points:

* :func:`paygate_server.app.create_app` — the ASGI application factory.
* :mod:`paygate_server.cli` — the ``paygate`` command line.
"""
from __future__ import annotations

__all__: list[str] = []
