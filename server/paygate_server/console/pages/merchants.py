"""``GET /merchants`` and ``/merchants/{id}`` (SPEC §12 "Merchants"): the merchants, their
allowed origins, API keys, webhook endpoints and recent deliveries, processor accounts and
routing rules.

Every change goes through the functions the CLI and the API use — ``merchants.py``
(create, origins, keys), ``webhooks.model.create_endpoint`` with the API's URL checks,
``DeliveryQueue.replay_failed`` (``paygate webhooks replay``, but never re-enabling an
endpoint: console/pages/replay.py) — and is recorded as an
operator action in the same transaction where there is one. A secret (a key's signing
secret, an endpoint's) is in the answer to the form that made it and nowhere else: never
in a later page, the action's record or a log. Processor accounts and routing rules are
shown with the CLI commands that change them (their credentials are files an operator
passes on a command line, not text for a browser form).
"""
from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server.console.actions import record_action, record_action_in
from paygate_server.console.pages.replay import replay_delivery
from paygate_server.console.sessions import SignedIn
from paygate_server.console.web import (
    Form,
    console_of,
    error_page,
    form_action,
    page,
    remote_addr,
    render,
)
from paygate_server.errors import ApiError
from paygate_server.merchants import (
    MerchantError,
    allow_origins,
    create_key,
    create_merchant,
    revoke_key,
)
from paygate_server.processors.accounts import list_processor_accounts, show_routing
from paygate_server.processors.routing import rule_text
from paygate_server.storage.api_keys import list_api_keys
from paygate_server.storage.merchants import get_merchant, list_merchants, list_origins
from paygate_server.storage.webhook_deliveries import DeliveryQueue
from paygate_server.storage.webhook_endpoints import list_endpoints
from paygate_server.webhooks.endpoints import validate_url
from paygate_server.webhooks.guard import MAX_URL_LENGTH
from paygate_server.webhooks.model import create_endpoint

__all__ = ["routes"]

LIST_LIMIT = 200
DELIVERIES_SHOWN = 20
_MERCHANT_ID = re.compile(r"mer_[A-Za-z0-9_]{1,60}")
_AFTER = re.compile(r"([0-9]{1,19})\.(mer_[A-Za-z0-9_]{1,60})")
_API_KEY = re.compile(r"pk_(test|live)_[A-Za-z0-9_-]{1,64}")
_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,60}")
_ENDPOINT_ID = re.compile(r"we_[A-Za-z0-9_]{1,60}")
MISSING = "There is no such merchant: check the id, or pick one from the list of merchants."


def _origins(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", text[:4000]) if part]


def _page_after(request: Request) -> tuple[int, str] | None | str:
    """The ``after`` keyset of ``GET /merchants?after=CREATED.mer_…`` (the previous page's
    last row); None: the first page; the operator's message for a link someone edited."""
    after = request.query_params.get("after")
    if after is None:
        return None
    match = _AFTER.fullmatch(after)
    if match is None or int(match.group(1)) >= 2**63:
        return "That page link is not valid: here are the newest merchants."
    return int(match.group(1)), match.group(2)


async def _list_page(request: Request, signed_in: SignedIn, *, status: int = 200, message: str = "",
                     name: str = "", origins: str = "", after: tuple[int, str] | None = None) -> Response:
    async with console_of(request).gateway.db.read() as conn:
        merchants = await list_merchants(conn, limit=LIST_LIMIT + 1, before=after)  # one more: a next page?
    older = None
    if len(merchants) > LIST_LIMIT:
        merchants = merchants[:LIST_LIMIT]
        older = f"/merchants?after={merchants[-1]['created_at']}.{merchants[-1]['id']}"
    return render(request, "merchants.html", signed_in, status=status, merchants=merchants, message=message,
                  name=name, origins=origins, older=older, paged=after is not None)


async def _merchant_page(request: Request, signed_in: SignedIn, merchant_id: str, *, status: int = 200,
                         message: str = "", failed: bool = False,
                         secret: dict[str, str] | None = None) -> Response:
    db = console_of(request).gateway.db
    if not _MERCHANT_ID.fullmatch(merchant_id):
        return error_page(request, signed_in, 404, MISSING)
    async with db.read() as conn:
        merchant = await get_merchant(conn, merchant_id)
        if merchant is None:
            return error_page(request, signed_in, 404, MISSING)
        origins = await list_origins(conn, merchant_id)
        keys = await list_api_keys(conn, merchant_id)
        endpoints = await list_endpoints(conn, merchant_id)
    deliveries = await DeliveryQueue(db).recent(merchant_id=merchant_id, limit=DELIVERIES_SHOWN)
    accounts = await list_processor_accounts(db, merchant_id, with_removed=True)
    rules = await show_routing(db, merchant_id)
    return render(request, "merchant.html", signed_in, status=status, merchant=merchant, origins=origins, keys=keys,
                  endpoints=endpoints, deliveries=deliveries, accounts=accounts, rules=[rule_text(rule) for rule in rules or []], message=message,
                  failed=failed or status >= 400, secret=secret)


@page("read")
async def merchants_page(request: Request, signed_in: SignedIn) -> Response:
    after = _page_after(request)
    if isinstance(after, str):
        return await _list_page(request, signed_in, status=400, message=after)
    return await _list_page(request, signed_in, after=after)


@page("read")
async def merchant_page(request: Request, signed_in: SignedIn) -> Response:
    return await _merchant_page(request, signed_in, request.path_params["merchant_id"])


@form_action("manage_merchants")
async def create(request: Request, signed_in: SignedIn, form: Form) -> Response:
    console = console_of(request)
    name, origins = form.get("name", "")[:300], form.get("origins", "")[:4000]
    try:
        async with console.gateway.db.write() as conn:
            pair = await create_merchant(conn, console.gateway.master_key, name=name, origins=_origins(origins))
            await record_action_in(conn, operator_id=signed_in.operator_id, action="merchant.create",
                                   target=pair.merchant_id, detail={"name": name.strip(), "api_key": pair.api_key},
                                   remote_addr=remote_addr(request))
    except MerchantError as exc:
        return await _list_page(request, signed_in, status=400, message=f"Not created: {exc}.", name=name,
                                origins=origins)
    return await _merchant_page(request, signed_in, pair.merchant_id,
                                message=f"Created {name.strip()} with its first API key.",
                                secret={"what": "API key " + pair.api_key, "value": pair.signing_secret})


def _merchant_form(handler: Any) -> Any:
    """A merchant's form: its id from the path, checked before the handler runs."""
    async def checked(request: Request, signed_in: SignedIn, form: Form) -> Response:
        merchant_id = request.path_params["merchant_id"]
        if not _MERCHANT_ID.fullmatch(merchant_id):
            return error_page(request, signed_in, 404, MISSING)
        async with console_of(request).gateway.db.read() as conn:
            if await get_merchant(conn, merchant_id) is None:
                return error_page(request, signed_in, 404, MISSING)
        response: Response = await handler(request, signed_in, form, merchant_id)
        return response
    return checked


@form_action("manage_merchants")
@_merchant_form
async def add_origins(request: Request, signed_in: SignedIn, form: Form, merchant_id: str) -> Response:
    console = console_of(request)
    wanted = _origins(form.get("origins", ""))
    if not wanted:
        return await _merchant_page(request, signed_in, merchant_id, status=400,
                                    message="Enter an origin like https://shop.example.")
    try:
        async with console.gateway.db.write() as conn:
            await allow_origins(conn, merchant_id, wanted)
            await record_action_in(conn, operator_id=signed_in.operator_id, action="merchant.origins_add",
                                   target=merchant_id, detail={"origins": " ".join(wanted)[:500]},
                                   remote_addr=remote_addr(request))
    except MerchantError as exc:
        return await _merchant_page(request, signed_in, merchant_id, status=400, message=f"Not added: {exc}.")
    return await _merchant_page(request, signed_in, merchant_id, message="Origins allowed.")


@form_action("manage_merchants")
@_merchant_form
async def new_key(request: Request, signed_in: SignedIn, form: Form, merchant_id: str) -> Response:
    console = console_of(request)
    async with console.gateway.db.write() as conn:
        pair = await create_key(conn, console.gateway.master_key, merchant_id, live=form.get("live") == "1")
        await record_action_in(conn, operator_id=signed_in.operator_id, action="api_key.create", target=merchant_id,
                               detail={"api_key": pair.api_key}, remote_addr=remote_addr(request))
    return await _merchant_page(request, signed_in, merchant_id, message=f"Created API key {pair.api_key}.",
                                secret={"what": "API key " + pair.api_key, "value": pair.signing_secret})


@form_action("manage_merchants")
@_merchant_form
async def revoke(request: Request, signed_in: SignedIn, form: Form, merchant_id: str) -> Response:
    console = console_of(request)
    api_key = form.get("api_key", "")
    if not _API_KEY.fullmatch(api_key):
        return await _merchant_page(request, signed_in, merchant_id, status=400,
                                    message="That is not an API key of this merchant: use the button on its row.")
    try:
        async with console.gateway.db.write() as conn:
            await revoke_key(conn, merchant_id, api_key)
            await record_action_in(conn, operator_id=signed_in.operator_id, action="api_key.revoke",
                                   target=merchant_id, detail={"api_key": api_key}, remote_addr=remote_addr(request))
    except MerchantError as exc:
        return await _merchant_page(request, signed_in, merchant_id, status=400, message=f"Not revoked: {exc}.")
    return await _merchant_page(request, signed_in, merchant_id,
                                message=f"Revoked {api_key}: requests signed with it are refused from now on.")


@form_action("manage_merchants")
@_merchant_form
async def new_endpoint(request: Request, signed_in: SignedIn, form: Form, merchant_id: str) -> Response:
    console = console_of(request)
    url = form.get("url", "").strip()
    try:
        if not url or len(url) > MAX_URL_LENGTH:
            raise ApiError("parameter_invalid", f"a webhook URL is 1 to {MAX_URL_LENGTH} characters", param="url")
        await validate_url(url, allow_private=console.settings.webhook_allow_private)
        async with console.gateway.db.write() as conn:
            endpoint, secret = await create_endpoint(conn, console.gateway.master_key, merchant_id, url, None)
            await record_action_in(conn, operator_id=signed_in.operator_id, action="webhook_endpoint.create",
                                   target=merchant_id, detail={"endpoint": endpoint.id, "url": url},
                                   remote_addr=remote_addr(request))
    except ApiError as exc:
        return await _merchant_page(request, signed_in, merchant_id, status=400,
                                    message=f"Not created: {exc.message}.")
    return await _merchant_page(request, signed_in, merchant_id, message=f"Created webhook endpoint {endpoint.id}.",
                                secret={"what": "webhook endpoint " + endpoint.id, "value": secret})


@form_action("replay")
@_merchant_form
async def replay(request: Request, signed_in: SignedIn, form: Form, merchant_id: str) -> Response:
    console = console_of(request)
    event_id, endpoint_id = form.get("event_id", ""), form.get("endpoint_id", "")
    if not _EVENT_ID.fullmatch(event_id) or not _ENDPOINT_ID.fullmatch(endpoint_id):
        return await _merchant_page(request, signed_in, merchant_id, status=400,
                                    message="That delivery cannot be replayed: use the button on its row.")
    outcome = await replay_delivery(console.gateway.db, merchant_id=merchant_id, endpoint_id=endpoint_id,
                                    event_id=event_id)
    replayed = outcome.replayed
    # Recorded either way: the operator asked, whether or not there was anything to replay.
    label = "replayed" if replayed else "refused: endpoint not enabled" if outcome.refusal else "nothing to replay"
    await record_action(console.gateway.db, operator_id=signed_in.operator_id, action="webhook.replay",
                        target=event_id, detail={"endpoint": endpoint_id, "merchant": merchant_id, "outcome": label},
                        remote_addr=remote_addr(request))
    if outcome.refusal:
        return await _merchant_page(request, signed_in, merchant_id, status=409, message=outcome.refusal,
                                    failed=True)
    if not replayed:
        return await _merchant_page(request, signed_in, merchant_id,
                                    message=f"{event_id} is not a failed delivery any more: nothing to replay.")
    return await _merchant_page(request, signed_in, merchant_id,
                                message=f"{event_id} will be delivered again to {endpoint_id} by the gateway.")


routes = [
    Route("/merchants", merchants_page, methods=["GET"]),
    Route("/merchants", create, methods=["POST"]),
    Route("/merchants/{merchant_id}", merchant_page, methods=["GET"]),
    Route("/merchants/{merchant_id}/origins", add_origins, methods=["POST"]),
    Route("/merchants/{merchant_id}/keys", new_key, methods=["POST"]),
    Route("/merchants/{merchant_id}/keys/revoke", revoke, methods=["POST"]),
    Route("/merchants/{merchant_id}/webhooks", new_endpoint, methods=["POST"]),
    Route("/merchants/{merchant_id}/deliveries/replay", replay, methods=["POST"]),
]
