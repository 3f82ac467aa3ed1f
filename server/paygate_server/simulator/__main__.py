"""``python -m paygate_server.simulator [--host H] [--port N] [--store PATH] ...``"""

from __future__ import annotations

import os
import sys

from paygate_server.cli_parser import Parser, file_descriptor, port_number, seconds, whole_number

from .app import SEED_ENV, seed_from_env
from .server import DEFAULT_PORT, serve


def main(argv: list[str] | None = None) -> int:
    # cli_parser's Parser, as `paygate` uses: a refusal is one line, not a usage block first.
    parser = Parser(
        prog="python -m paygate_server.simulator",
        description="paygate processor simulator (a card-network sandbox)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT)
    parser.add_argument(
        "--store",
        default=None,
        help="SQLite file (default $PAYGATE_SIMULATOR_STORE or $PAYGATE_DATA_DIR/simulator.db)",
    )
    parser.add_argument(
        "--slow-card-delay",
        type=seconds(3600.0),
        default=30.0,
        help="seconds before answering card 4000000000001018 / timeoutRate faults",
    )
    parser.add_argument("--seed", type=whole_number(0, 2**64 - 1), default=None, help="seed (else PAYGATE_SIMULATOR_SEED)")
    parser.add_argument(
        "--fd", type=file_descriptor, default=None, help="serve on this inherited listening socket"
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    if args.seed is None and os.environ.get(SEED_ENV):
        try:
            args.seed = seed_from_env(os.environ[SEED_ENV])
        except ValueError as exc:
            print(f"{parser.prog}: {exc}", file=sys.stderr)
            return 2
    if args.fd is None:
        # As `paygate simulator` does: a port in use is one line, not uvicorn's startup log
        # followed by its bind error and exit status 3.
        from paygate_server.cli import CommandError, check_port_free

        try:
            check_port_free(args.host, args.port, "--port")
        except CommandError as exc:
            print(f"{parser.prog}: {exc}", file=sys.stderr)
            return 2
    serve(
        args.host,
        args.port,
        args.store,
        args.slow_card_delay,
        seed=args.seed,
        fd=args.fd,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
