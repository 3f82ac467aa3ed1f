"""``python -m storefront [--host H] [--port P | --fd N]``: serve the shop with uvicorn.

``--fd`` serves on a socket the parent already bound (``paygate demo`` does this)."""
from __future__ import annotations

import argparse
import logging
import logging.config
import os

import uvicorn

# Not the payment integration (that is the SDK alone): the HTTP server's limits on request
# heads (size, count, time), shared by every paygate server and shipped in the same
# `paygate` distribution as the SDK.
from paygate_server.cli_parser import file_descriptor, port_number
from paygate_server.headerguard import uvicorn_http_options
from paygate_server.logs import STARTUP_LOGGER, logging_config, redact_url

from storefront.app import create_app
from storefront.config import StorefrontConfig


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m storefront", description=__doc__, allow_abbrev=False)
    parser.add_argument("--host", default=os.environ.get("STOREFRONT_HOST", "127.0.0.1"))
    # Ports and socket numbers refused here (once: bind()'s or socket()'s OverflowError, and
    # int()'s ValueError for STOREFRONT_PORT=x, each a traceback).
    parser.add_argument("--port", type=port_number, default=None, help="default: STOREFRONT_PORT, else 8082")
    parser.add_argument("--fd", type=file_descriptor, default=None, help="serve on this inherited socket")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    if args.port is None:
        try:
            args.port = port_number(os.environ.get("STOREFRONT_PORT") or "8082")
        except argparse.ArgumentTypeError as exc:
            raise SystemExit(f"storefront: STOREFRONT_PORT: {exc}") from None
    config = StorefrontConfig.from_env()
    app = create_app(config)
    log_config = logging_config(args.log_level)
    logging.config.dictConfig(log_config)
    logging.getLogger(STARTUP_LOGGER).info("storefront starting", extra={"fields": {
        "listen": f"fd {args.fd}" if args.fd is not None else f"{args.host}:{args.port}",
        "gateway": redact_url(config.gateway_url)}})
    # Long-polls are held up to 20 s; on shutdown, browsers simply ask again.
    options = {"log_level": args.log_level, "log_config": log_config, "timeout_graceful_shutdown": 3,
               **uvicorn_http_options()}
    if args.fd is not None:
        uvicorn.run(app, fd=args.fd, **options)
    else:
        uvicorn.run(app, host=args.host, port=args.port, **options)


if __name__ == "__main__":
    main()
