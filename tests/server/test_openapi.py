"""The OpenAPI document is valid 3.1 and describes exactly the routes the app serves."""
from __future__ import annotations

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route

from paygate_server.app import create_app
from paygate_server.config import Settings
from tests.support.app import InProcessGateway


def _app_operations() -> set[tuple[str, str]]:
    app = create_app(Settings())
    ops = set()
    for route in app.routes:
        if isinstance(route, Route) and route.path.startswith("/api/v1/") and route.path != "/api/v1/openapi.json":
            for method in route.methods or ():
                if method != "HEAD":
                    ops.add((method.lower(), route.path))
    return ops


async def test_document_is_valid_and_complete(gw: InProcessGateway) -> None:
    r = await gw.http.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == _app_operations()


async def test_responses_match_their_schemas(gw: InProcessGateway) -> None:
    doc = (await gw.http.get("/api/v1/openapi.json")).json()
    shop = await gw.new_merchant()

    def check(schema_name: str, instance: object) -> None:
        schema = {**doc["components"]["schemas"][schema_name], "components": doc["components"]}
        Draft202012Validator(schema).validate(instance)

    intent = await shop.create_intent(metadata={"a": "b"})
    check("PaymentIntent", intent)
    pid = intent["paymentIntentId"]
    check("PaymentStatus", (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json())
    check("PaymentIntentList", (await shop.get("/api/v1/payment/intents")).json())
    check("History", (await shop.get(f"/api/v1/payment/intent/{pid}/history")).json())
    check("Error", (await shop.get("/api/v1/payment/intent/pi_nope00000000000000")).json())


# SPEC §2's table, and the two the servers add (docs/api.md "Errors"): 405 for a wrong
# method, 431 for a request head over the limits.
SPEC_CODES = {"invalid_json", "parameter_missing", "parameter_invalid", "plaintext_card_data", "token_invalid",
              "missing_credentials", "invalid_api_key", "invalid_signature", "stale_timestamp", "nonce_reused",
              "resource_missing", "intent_state_conflict", "idempotency_request_in_progress", "body_too_large",
              "idempotency_key_reused", "rate_limited", "internal_error", "service_unavailable"}
ADDED_CODES = {"method_not_allowed", "headers_too_large"}


async def test_the_error_codes_are_the_ones_answered(gw: InProcessGateway) -> None:
    # Once: unsupported_media_type, which nothing answers, was listed, and headers_too_large,
    # which the HTTP server answers, was not.
    doc = (await gw.http.get("/api/v1/openapi.json")).json()
    assert set(doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]) == \
        SPEC_CODES | ADDED_CODES


async def test_every_status_answered_is_documented_for_its_operation(gw: InProcessGateway) -> None:
    """Refusals of each operation (a malformed or unknown id, the wrong state) answer a
    status the document lists for it, and every operation lists 503 (the database
    unavailable: docs/api.md "Errors"). Found by schemathesis (ST103): a malformed
    ``startingAfter`` is ``404 resource_missing``, and the list's responses had no 404."""
    doc = (await gw.http.get("/api/v1/openapi.json")).json()
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    gets = {
        "/api/v1/payment/intents": ["?startingAfter=x", "?startingAfter=pi_nope00000000000000", "?limit=0"],
        "/api/v1/payment/intent/{intent_id}": ["x", "pi_nope00000000000000"],
        "/api/v1/payment/intent/{intent_id}/history": ["x"],
        "/api/v1/payment/status": ["?paymentIntentId=x", "?wait=x"],
        "/api/v1/payment/status/stream": ["?paymentIntentId=x"],
        "/api/v1/payment/refund/{refund_id}": ["x"],
        "/api/v1/webhooks": ["?limit=x"],
    }
    answered: list[tuple[str, str, int]] = []
    for path, variants in gets.items():
        for variant in variants:
            target = path.split("{")[0] + variant + path.split("}")[1] if "{" in path else path + variant
            answered.append(("get", path, (await shop.get(target)).status_code))
    answered.append(("delete", "/api/v1/webhooks/{endpoint_id}",
                     (await shop.request("DELETE", "/api/v1/webhooks/x")).status_code))
    posts = {
        "/api/v1/payment/intent": [{}, {"amount": 1.5, "currency": "USD", "productDetails": {}}],
        "/api/v1/payment/cancel": [{"paymentIntentId": "x"}],
        "/api/v1/payment/capture": [{"paymentIntentId": pid}, {"paymentIntentId": "x"}],
        "/api/v1/payment/refund": [{"paymentIntentId": pid}, {"paymentIntentId": "x"}],
        "/api/v1/payment/process": [{"paymentIntentId": "x", "paymentMethod": "card", "paymentDetails": {"token": "x"}}],
        "/api/v1/webhooks": [{"url": "ftp://x"}],
    }
    for path, bodies in posts.items():
        for body in bodies:
            answered.append(("post", path, (await shop.post(path, body)).status_code))
        answered.append(("post", path, (await gw.http.post(path, json={})).status_code))  # unsigned
    assert {status for _, _, status in answered} >= {400, 401, 404, 409}
    undocumented = [(m, p, s) for m, p, s in answered if str(s) not in doc["paths"][p][m]["responses"]]
    assert undocumented == []
    without_503 = [(m, p) for p, ops in doc["paths"].items() for m, op in ops.items() if "503" not in op["responses"]]
    assert without_503 == []
