"""What every console page shares: the console's services, templates, and the two
wrappers that stand between a request and a page's handler.

* :func:`page` (GET): the request must come with a live session (else to ``/login``) and
  its role must have the page's permission (else 403).
* :func:`form_action` (POST): first the ``Origin`` check, then the session, then the body
  (a bounded url-encoded form), then the CSRF token, then the permission — each refusal a
  readable page with its status (403, 413, 415, 400), never a traceback.

A pages module exports ``routes``; :mod:`paygate_server.console.app` composes them.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from paygate_server.cards.pan import contains_card_number
from paygate_server.clock import to_rfc3339
from paygate_server.config import Settings
from paygate_server.console.accounts import Accounts
from paygate_server.console.roles import Permission, can
from paygate_server.console.security import (
    CSRF_FIELD,
    CsrfTokens,
    cookie_is_secure,
    expected_origin,
    login_cookie_name,
    origin_allowed,
    session_cookie_name,
)
from paygate_server.console.sessions import Sessions, SignedIn, decode_id, encode_id
from paygate_server.currencies import format_minor
from paygate_server.errors import ApiError
from paygate_server.http.api import read_body
from paygate_server.state import Gateway

__all__ = ["Console", "FORBIDDEN_ORIGIN", "Form", "FormRefused", "NAV", "NavItem", "clear_session_cookie", "console_of",
           "clear_login_cookie", "error_page", "form_action", "login_form_id", "origin_ok", "page", "read_form",
           "remote_addr", "render", "session_cookie", "set_login_cookie", "set_session_cookie", "signed_in_of"]

MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 50
TEMPLATES = Path(__file__).parent / "templates"

Form = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    path: str
    permission: Permission = "read"


# The header's navigation; an entry shows once a pages module routes its path (later
# modules add Payments, Reconciliation and Merchants without editing this file).
NAV: tuple[NavItem, ...] = (
    NavItem("Overview", "/"),
    NavItem("Payments", "/payments"),
    NavItem("Reconciliation", "/reconciliation"),
    NavItem("Merchants", "/merchants"),
    NavItem("Activity", "/activity"),
    NavItem("Operators", "/operators", "manage_operators"),
)


@dataclass
class Console:
    """The console process's services (its lifespan state, ``request.state.console``)."""
    gateway: Gateway
    settings: Settings
    accounts: Accounts
    sessions: Sessions
    csrf: CsrfTokens
    nav: tuple[NavItem, ...] = field(default=NAV)
    name: str = "paygate console"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = lambda us: to_rfc3339(us) or ""
    env.filters["money"] = format_minor  # {{ amount | money(currency) }}: minor units shown in the major
    env.globals["can"] = can
    return env


_env = _environment()


def console_of(request: Request) -> Console:
    console: Console = request.state.console
    return console


def _over_https(request: Request) -> bool:
    return cookie_is_secure(request.url.scheme, console_of(request).settings.console_origin)


def session_cookie(request: Request) -> str | None:
    """The session cookie's value under the name this request's scheme gives it: over
    https only the ``__Host-`` one (a plain name there may have been set by a sibling
    sub-domain or a plain-http page: it is ignored)."""
    return request.cookies.get(session_cookie_name(_over_https(request)))


async def signed_in_of(request: Request, *, activity: bool = True) -> SignedIn | None:
    return await console_of(request).sessions.resume(session_cookie(request), activity=activity)


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    secure = _over_https(request)
    response.set_cookie(session_cookie_name(secure), value, max_age=console_of(request).settings.console_session_ttl_s,
                        path="/", httponly=True, samesite="strict", secure=secure)


def clear_session_cookie(response: Response, request: Request) -> None:
    # With the attributes it was set with: a __Host- cookie is only replaced by a Secure one.
    secure = _over_https(request)
    response.delete_cookie(session_cookie_name(secure), path="/", httponly=True, samesite="strict", secure=secure)


def login_form_id(request: Request) -> bytes | None:
    """The random id of this browser's login cookie (the login form's CSRF token is its HMAC)."""
    cookie = request.cookies.get(login_cookie_name(_over_https(request)))
    return decode_id(cookie) if cookie else None


def set_login_cookie(response: Response, request: Request, login_id: bytes) -> None:
    # No Max-Age: it lasts the browser's session; the session cookie's attributes otherwise.
    secure = _over_https(request)
    response.set_cookie(login_cookie_name(secure), encode_id(login_id), path="/", httponly=True, samesite="strict",
                        secure=secure)


def clear_login_cookie(response: Response, request: Request) -> None:
    secure = _over_https(request)
    response.delete_cookie(login_cookie_name(secure), path="/", httponly=True, samesite="strict", secure=secure)


def remote_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


def render(request: Request, template: str, signed_in: SignedIn | None, *, status: int = 200,
           **context: Any) -> HTMLResponse:
    console = console_of(request)
    csrf = context.pop("csrf", None) or (console.csrf.token(signed_in.session_id) if signed_in else "")
    nav = [item for item in console.nav if signed_in and can(signed_in.role, item.permission)]
    html = _env.get_template(template).render(console_name=console.name, operator=signed_in, csrf=csrf,
                                              csrf_field=CSRF_FIELD, nav=nav, path=request.url.path, **context)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, signed_in: SignedIn | None, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", signed_in, status=status, status_code=status, message=message)


def _to_login(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request)
    return response


PageHandler = Callable[[Request, SignedIn], Awaitable[Response]]
FormHandler = Callable[[Request, SignedIn, Form], Awaitable[Response]]


def page(permission: Permission = "read") -> Callable[[PageHandler], Callable[[Request], Awaitable[Response]]]:
    def wrap(handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            signed_in = await signed_in_of(request)
            if signed_in is None:
                return _to_login(request)
            if not can(signed_in.role, permission):
                return error_page(request, signed_in, 403, "Your role cannot open this page. Ask an admin if you "
                                                           "need it.")
            if any("\x00" in name or "\x00" in value for name, value in request.query_params.multi_items()):
                # As in read_form: no id or filter holds a NUL, and PostgreSQL refuses one in text.
                return error_page(request, signed_in, 400, "The address holds a character no field takes (NUL): "
                                                           "start again from the page's links.")
            if contains_card_number(request.query_params.multi_items()):
                # Every page shows its filters back (SPEC §12: never a card number).
                return error_page(request, signed_in, 400, CARD_NUMBER_REFUSED)
            return await handler(request, signed_in)
        return endpoint
    return wrap


def origin_ok(request: Request) -> bool:
    configured = console_of(request).settings.console_origin
    return origin_allowed(request.headers, expected_origin(request.url.scheme, request.headers.get("host"),
                                                           configured))


CARD_NUMBER_REFUSED = ("That looks like a card number: the console never takes one. To find a payment, search by "
                       "its card's last 4 digits.")


class FormRefused(Exception):
    """A form that cannot be read: its status and what to do, for the error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_form(request: Request) -> Form:
    """The url-encoded form's fields (the first value of each); FormRefused otherwise."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", ""):
        raise FormRefused(415, "Send the form from the console's page (url-encoded).")
    try:
        body = (await read_body(request, MAX_FORM_BYTES)).decode("utf-8")
        fields = parse_qs(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ApiError as exc:
        if exc.code != "body_too_large":  # a Content-Length that is not a number
            raise FormRefused(400, "The form could not be read: send it again from the console's page.") from None
        raise FormRefused(413, f"The form is larger than {MAX_FORM_BYTES // 1024} KiB.") from None
    except (UnicodeDecodeError, ValueError):
        raise FormRefused(400, "The form could not be read: send it again from the console's page.") from None
    if not content_type and fields:  # no type is an empty form, nothing else
        raise FormRefused(415, "Send the form from the console's page (url-encoded).")
    if any("\x00" in name or "\x00" in value for name, values in fields.items() for value in values):
        # No text the console stores or looks up holds a NUL, and PostgreSQL refuses one in text.
        raise FormRefused(400, "The form holds a character no field takes (NUL): type the values again.")
    form = {name: values[0] for name, values in fields.items()}
    # Whatever a form stores or shows back (a merchant's name, a refund's reason, an
    # operator's email) must not be a card number; a password is never shown or stored.
    if contains_card_number([(name, value) for name, value in form.items() if name != "password"]):
        raise FormRefused(400, CARD_NUMBER_REFUSED)
    return form


FORBIDDEN_ORIGIN = "This form was not sent from the console's own page: open the console and try again."


def form_action(permission: Permission) -> Callable[[FormHandler], Callable[[Request], Awaitable[Response]]]:
    def wrap(handler: FormHandler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not origin_ok(request):
                return error_page(request, None, 403, FORBIDDEN_ORIGIN)
            console = console_of(request)
            signed_in = await signed_in_of(request)
            if signed_in is None:
                return _to_login(request)
            try:
                form = await read_form(request)
            except FormRefused as refused:
                return error_page(request, signed_in, refused.status, refused.message)
            if not console.csrf.valid(signed_in.session_id, form.get(CSRF_FIELD)):
                return error_page(request, signed_in, 403, "This form has expired or did not come from the console: "
                                                           "reload the page and try again.")
            if not can(signed_in.role, permission):
                return error_page(request, signed_in, 403, "Your role cannot do this. Ask an admin if you need it.")
            return await handler(request, signed_in, form)
        return endpoint
    return wrap
