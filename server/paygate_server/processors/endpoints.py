"""``POST /processors/v1/{processorAccountId}/webhooks``: a processor's own notifications (SPEC §7).

Not an ``/api/v1`` route: the processor authenticates with its own signature scheme, which
the account's connector checks. Unverifiable → ``400``, nothing applied; verified → the
answer that processor expects (Stripe: ``200`` JSON, Adyen: ``[accepted]``).
"""
from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server.errors import ApiError
from paygate_server.http.api import error_response, read_body
from paygate_server.http.middleware import request_id_of
from paygate_server.processing.connectors import WebhookRejected
from paygate_server.processors.notifications import AccountUnknown, receive_notification
from paygate_server.processors.registry import is_account
from paygate_server.state import Gateway

__all__ = ["routes"]

log = logging.getLogger("paygate.processors")
# Processors' notifications are small (an Adyen batch holds at most a few dozen items).
_MAX_BODY = 256 * 1024


async def processor_webhook(request: Request) -> Response:
    gateway: Gateway = request.state.gateway
    account_id = request.path_params["account_id"]
    try:
        body = await read_body(request, _MAX_BODY)
        # Only an account id: any other route would name the default connector, not an account.
        if not is_account(account_id) or len(account_id) > 32:
            raise ApiError("resource_missing", "no such processor account")
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            reply, settled = await receive_notification(gateway, account_id, headers, body)
        except AccountUnknown:
            raise ApiError("resource_missing", "no such processor account") from None
        except WebhookRejected as exc:
            log.warning("processor notification refused for %s: %s", account_id, exc)
            raise ApiError("parameter_invalid", f"the notification could not be verified: {exc}") from None
    except ApiError as exc:
        return error_response(exc, request_id_of(request.scope))
    log.info("processor notification for %s: %d event(s), %d settled", account_id, len(reply.events), settled)
    return Response(reply.body, reply.status, media_type=reply.content_type)


routes = [Route("/processors/v1/{account_id}/webhooks", processor_webhook, methods=["POST"])]
