"""The operator console (SPEC §12): a web console for the people who run the gateway, in
its own process (``paygate console``) on the gateway's database.

Modules: ``app`` (the application and its lifespan), ``web`` (what pages share: services,
templates, the page and form wrappers), ``accounts`` (Argon2id passwords, lockout),
``sessions`` (cookie sessions, hashed at rest), ``security`` (CSRF, Origin, headers),
``roles`` (the one permission table), ``actions`` (the record of operators' actions),
``pages/`` (one module per page, each exporting ``routes``), ``cli`` (``paygate console``,
``paygate operators …``). docs/operations.md "Console" has the policies.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from paygate_server.console.roles import ROLES, can
from paygate_server.lazy import lazy_exports

if TYPE_CHECKING:
    from paygate_server.console.app import create_console_app, create_console_app_from_env

__all__ = ["ROLES", "can", "create_console_app", "create_console_app_from_env"]


# The application (and with it the gateway's services and the database engine) loads on
# first use, not with the package: `paygate --help` imports the console's commands (cli).
__getattr__ = lazy_exports(__name__, dict.fromkeys(("create_console_app", "create_console_app_from_env"), ".app"))
