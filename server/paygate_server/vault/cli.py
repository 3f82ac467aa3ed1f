"""``paygate vault rotate-data-key`` (listed in ``cli.CLI_EXTENSIONS``)."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from paygate_server.cli import emit, run_with_db
from paygate_server.config import Settings

if TYPE_CHECKING:
    from paygate_server.storage import Database

__all__ = ["add_commands"]


def cmd_rotate_data_key(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.master_key import database_master_key
    from paygate_server.vault.datakeys import rotate_data_key

    async def run(db: Database) -> tuple[list[int], int]:
        master = await database_master_key(settings, db)
        return await rotate_data_key(db, master)

    retired, version = run_with_db(settings, run)
    emit(args, {"version": version, "retired": retired},
         f"vault data key version {version} is now active; retired {', '.join(str(v) for v in retired) or 'none'}"
         " (old versions keep decrypting; running gateways switch within PAYGATE_VAULT_PURGE_INTERVAL_S)")


def add_commands(sub: Any) -> None:
    vault = sub.add_parser("vault", help="the card vault").add_subparsers(dest="vault_command", required=True)
    p = vault.add_parser("rotate-data-key", help="new vault data key; older versions keep decrypting")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rotate_data_key)
