"""``GET /operators`` and its forms (admin only): create an account, disable one.

The new account's password is generated here and shown once, on the answer to the
create form — an admin never chooses (or learns after the fact) a colleague's password;
they hand it over and the colleague keeps it. The ``paygate operators create`` command
is the way to set a password of one's own choosing.
"""
from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server.console.accounts import AccountError, Actor
from paygate_server.console.roles import ROLES
from paygate_server.console.sessions import SignedIn
from paygate_server.console.web import Form, console_of, form_action, page, remote_addr, render

__all__ = ["routes"]


async def _page(request: Request, signed_in: SignedIn, *, status: int = 200, message: str = "",
                created: tuple[str, str] | None = None, email: str = "", role: str = "viewer") -> Response:
    operators = await console_of(request).accounts.list()
    return render(request, "operators.html", signed_in, status=status, operators=operators, roles=ROLES,
                  message=message, failed=status >= 400, created=created, email=email, role=role)


@page("manage_operators")
async def operators_page(request: Request, signed_in: SignedIn) -> Response:
    return await _page(request, signed_in)


@form_action("manage_operators")
async def create_operator(request: Request, signed_in: SignedIn, form: Form) -> Response:
    console = console_of(request)
    email, role = form.get("email", "")[:254], form.get("role", "")
    password = secrets.token_urlsafe(15)  # 20 characters, 120 bits
    try:
        row = await console.accounts.create(email, role, password,
                                            by=Actor(signed_in.operator_id, remote_addr(request)))
    except AccountError as exc:
        return await _page(request, signed_in, status=400, message=f"Not created: {exc}.", email=email,
                           role=role)
    return await _page(request, signed_in, created=(row.email, password))


@form_action("manage_operators")
async def disable_operator(request: Request, signed_in: SignedIn, form: Form) -> Response:
    console = console_of(request)
    email = form.get("email", "")[:254]
    if email.strip().lower() == signed_in.email:
        return await _page(request, signed_in, status=400,
                           message="You cannot disable your own account: ask another admin.")
    try:
        row = await console.accounts.disable(email, by=Actor(signed_in.operator_id, remote_addr(request)))
    except AccountError as exc:
        return await _page(request, signed_in, status=400, message=f"Not disabled: {exc}.")
    return await _page(request, signed_in, message=f"{row.email} is disabled and signed out everywhere.")


routes = [
    Route("/operators", operators_page, methods=["GET"]),
    Route("/operators", create_operator, methods=["POST"]),
    Route("/operators/disable", disable_operator, methods=["POST"]),
]
