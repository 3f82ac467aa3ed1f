"""What each console role may do (SPEC §12): the one table.

Templates ask :func:`can` to hide a control; handlers ask it again to refuse the request
(403), so a control that is hidden is also refused when posted by hand.
"""
from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = ["PERMISSIONS", "Permission", "ROLES", "Role", "can", "is_role"]

Role = Literal["admin", "support", "viewer"]
Permission = Literal["read", "refund", "cancel", "capture", "reconcile", "replay", "manage_operators",
                     "manage_merchants"]

ROLES: Final[tuple[Role, ...]] = get_args(Role)

# Exactly SPEC §12's list. "reconcile" (ask the processor now, mark a late outcome handled)
# is not in it: asking the processor can settle a payment, so it is admin's ("everything").
_SUPPORT: frozenset[Permission] = frozenset({"read", "refund", "cancel", "capture", "replay"})
PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    "admin": frozenset(get_args(Permission)),  # everything, operators and merchants included
    "support": _SUPPORT,
    "viewer": frozenset({"read"}),
}


def is_role(value: str) -> bool:
    return value in PERMISSIONS


def can(role: str, permission: Permission) -> bool:
    """Whether ``role`` may ``permission``; an unknown role (a row edited by hand) may nothing."""
    return permission in PERMISSIONS.get(role, frozenset())  # type: ignore[call-overload]
