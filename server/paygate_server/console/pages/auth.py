"""``GET/POST /login`` and ``POST /logout``.

The login form is checked by ``Origin`` only (there is no session to bind a CSRF token
to yet); logout is a normal form action (CSRF + Origin) and revokes the session
server-side, so a copy of the old cookie is worth nothing.
"""
from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from paygate_server.console.accounts import LOGIN_REFUSED
from paygate_server.console.actions import record_action
from paygate_server.console.sessions import SignedIn
from paygate_server.console.web import (
    FORBIDDEN_ORIGIN,
    Form,
    FormRefused,
    clear_session_cookie,
    console_of,
    error_page,
    form_action,
    origin_ok,
    read_form,
    remote_addr,
    render,
    session_cookie,
    set_session_cookie,
    signed_in_of,
)

__all__ = ["routes"]

log = logging.getLogger("paygate.console")


async def login_page(request: Request) -> Response:
    signed_in = await signed_in_of(request)
    if signed_in is not None:
        return RedirectResponse("/", status_code=303)
    return render(request, "login.html", None, email="", message="")


async def login(request: Request) -> Response:
    if not origin_ok(request):
        return error_page(request, None, 403, FORBIDDEN_ORIGIN)
    try:
        form = await read_form(request)
    except FormRefused as refused:
        return error_page(request, None, refused.status, refused.message)
    console = console_of(request)
    email, password = form.get("email", "")[:254], form.get("password", "")
    if not email or not password:
        return render(request, "login.html", None, status=400, email=email,
                      message="Enter your email and your password.")
    address = remote_addr(request)
    result = await console.accounts.login(email, password, address)
    if result.operator is None:
        log.info("console login refused", extra={"fields": {"locked": result.locked, "remote_addr": address}})
        return render(request, "login.html", None, status=401, email=email, message=LOGIN_REFUSED)
    operator = result.operator
    cookie = await console.sessions.start(operator.id, remote_addr=address,
                                          user_agent=request.headers.get("user-agent"))
    await record_action(console.gateway.db, operator_id=operator.id, action="login", remote_addr=address)
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, request, cookie)
    return response


@form_action("read")
async def logout(request: Request, signed_in: SignedIn, form: Form) -> Response:
    console = console_of(request)
    await console.sessions.end(session_cookie(request))
    await record_action(console.gateway.db, operator_id=signed_in.operator_id, action="logout",
                        remote_addr=remote_addr(request))
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request)
    return response


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
