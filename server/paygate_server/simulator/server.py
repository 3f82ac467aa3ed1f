"""Running the simulator under uvicorn (``paygate simulator``)."""

from __future__ import annotations

import logging
import os
import pathlib
import socket

import uvicorn

from paygate_server.headerguard import uvicorn_http_options
from paygate_server.logs import STARTUP_LOGGER, logging_config

from .app import create_app, install_log_filter

__all__ = ["DEFAULT_PORT", "serve"]

DEFAULT_PORT = 8081
STORE_ENV = "PAYGATE_SIMULATOR_STORE"


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    store_path: str | pathlib.Path | None = None,
    slow_card_delay_s: float = 30.0,
    *,
    seed: int | None = None,
    fd: int | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve the simulator until SIGINT/SIGTERM (blocking).

    ``fd``: serve on an already-listening socket inherited from the parent (how the
    test helper gets a race-free port). The access log is off by default: at
    benchmark rates it costs more than the simulator itself.
    """
    # --store, else $PAYGATE_SIMULATOR_STORE, else the data folder's (./paygate-data, as for the gateway).
    data_dir = pathlib.Path(os.environ.get("PAYGATE_DATA_DIR") or "paygate-data")  # empty: the default, as config.py
    store = pathlib.Path(store_path or os.environ.get(STORE_ENV) or data_dir / "simulator.db")
    app = create_app(store, slow_card_delay_s=slow_card_delay_s, seed=seed)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=logging_config(log_level),
        access_log=access_log,
        lifespan="on",
        # Slow answers (card 1018) would otherwise hold a shutdown for 30 s.
        timeout_graceful_shutdown=2,
        **uvicorn_http_options(),
    )
    # uvicorn configures logging when the Config is built: install the filter after.
    install_log_filter()
    server = uvicorn.Server(config)
    sock = socket.socket(fileno=fd) if fd is not None else None
    if sock is not None:
        host, port = sock.getsockname()[:2]
    logging.getLogger(STARTUP_LOGGER).info("paygate simulator starting", extra={"fields": {
        "listen": f"{host}:{port}", "store": str(store)}})
    server.run(sockets=[sock] if sock is not None else None)
