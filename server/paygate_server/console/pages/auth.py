"""``GET/POST /login`` and ``POST /logout``.

The login form is checked as every form is, by ``Origin`` and a CSRF token — with no
session yet, the token is bound to a random id in the login cookie the login page sets
(security.py, "CSRF"); logout is a normal form action (CSRF + Origin) and revokes the
session server-side, so a copy of the old cookie is worth nothing.
"""
from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from paygate_server.console.accounts import LOGIN_REFUSED
from paygate_server.console.actions import record_action
from paygate_server.console.security import CSRF_FIELD
from paygate_server.console.sessions import SignedIn, new_id_bytes
from paygate_server.console.web import (
    FORBIDDEN_ORIGIN,
    Form,
    FormRefused,
    clear_login_cookie,
    clear_session_cookie,
    console_of,
    error_page,
    form_action,
    login_form_id,
    origin_ok,
    read_form,
    remote_addr,
    render,
    session_cookie,
    set_login_cookie,
    set_session_cookie,
    signed_in_of,
)

__all__ = ["routes"]

log = logging.getLogger("paygate.console")


async def login_page(request: Request) -> Response:
    signed_in = await signed_in_of(request)
    if signed_in is not None:
        return RedirectResponse("/", status_code=303)
    return _login_form(request, email="", message="")


def _login_form(request: Request, *, email: str, message: str, status: int = 200) -> Response:
    """The form with its CSRF token; the login cookie is set only if this browser has none
    (so every refusal to one browser answers alike, headers included)."""
    login_id = login_form_id(request)
    fresh = login_id is None
    login_id = login_id or new_id_bytes()
    response = render(request, "login.html", None, status=status, email=email, message=message,
                      csrf=console_of(request).csrf.login_token(login_id))
    if fresh:
        set_login_cookie(response, request, login_id)
    return response


async def login(request: Request) -> Response:
    if not origin_ok(request):
        return error_page(request, None, 403, FORBIDDEN_ORIGIN)
    try:
        form = await read_form(request)
    except FormRefused as refused:
        return error_page(request, None, refused.status, refused.message)
    console = console_of(request)
    email, password = form.get("email", "")[:254], form.get("password", "")
    login_id = login_form_id(request)
    if login_id is None or not console.csrf.valid_login(login_id, form.get(CSRF_FIELD)):
        # Before the password is looked at: a forged form costs no Argon2 and no failure.
        return _login_form(request, status=403, email=email,
                           message="This login form has expired or was not sent from the console's login page: "
                                   "enter your email and password again.")
    if not email or not password:
        return _login_form(request, status=400, email=email, message="Enter your email and your password.")
    address = remote_addr(request)
    result = await console.accounts.login(email, password, address)
    if result.operator is None:
        log.info("console login refused", extra={"fields": {"locked": result.locked, "remote_addr": address}})
        return _login_form(request, status=401, email=email, message=LOGIN_REFUSED)
    operator = result.operator
    cookie = await console.sessions.start(operator.id, remote_addr=address,
                                          user_agent=request.headers.get("user-agent"))
    await record_action(console.gateway.db, operator_id=operator.id, action="login", remote_addr=address)
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, request, cookie)
    clear_login_cookie(response, request)  # the next login page makes a new one
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
