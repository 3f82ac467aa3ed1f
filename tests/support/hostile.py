"""Hostile input for every surface (tests/e2e/test_hostile_api.py, the console's and the
CLI's hostile tests): hypothesis strategies for values, JSON bodies, query strings and path
ids of every shape, and the checks every answer to them must pass.

The strategies draw from what breaks parsers and databases rather than from uniform noise:
wrong JSON types per field, integers past 2**63, floats past double range, NaN, unicode
and NUL in ids and currencies, duplicate keys, deep nesting, bodies that are not JSON, and
card numbers (so an answer that echoes one is caught).
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import strategies as st
from starlette.routing import Route

__all__ = ["CARD_INTEGERS", "CARD_NUMBERS", "SPEC_ERROR_CODES", "assert_no_leak", "assert_spec_error", "bodies", "check_answer",
           "hostile_keys", "hostile_values", "served_routes", "path_ids", "query_strings", "scalars", "text_values"]

# SPEC §2's table; method_not_allowed and headers_too_large are docs/api.md's additions for
# a wrong method and an oversized head (answered before any route runs).
SPEC_ERROR_CODES: dict[str, tuple[int, str]] = {
    **dict.fromkeys(["invalid_json", "parameter_missing", "parameter_invalid", "plaintext_card_data",
                     "token_invalid"], (400, "invalid_request_error")),
    **dict.fromkeys(["missing_credentials", "invalid_api_key", "invalid_signature", "stale_timestamp",
                     "nonce_reused"], (401, "authentication_error")),
    "resource_missing": (404, "invalid_request_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "headers_too_large": (431, "invalid_request_error"),
    "intent_state_conflict": (409, "invalid_request_error"),
    "idempotency_request_in_progress": (409, "invalid_request_error"),
    "body_too_large": (413, "invalid_request_error"),
    "idempotency_key_reused": (422, "idempotency_error"),
    "rate_limited": (429, "rate_limit_error"),
}

# Luhn-valid test cards in the shapes SPEC §4 says are card numbers (spaces, dashes).
CARD_NUMBERS = ("4242424242424242", "4242 4242 4242 4242", "5555-5555-5555-4444", "378282246310005")

_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+")


text_values = st.one_of(
    st.text(max_size=40),  # any unicode, NUL and surrogate-free controls included
    st.sampled_from(["", " ", "\x00", "USD\x00", "usd", "US", "ÜSD", "ＵＳＤ", "JPY ", "\u202eDSU",
                     "pi_", "pi_\x00", "pi_" + "a" * 300, "tok_", "mer_x", "we_x", "../../etc/passwd",
                     "'; DROP TABLE payment_intents; --", "%00", "${jndi:x}", "<script>x</script>",
                     "\ud7ff\ue000\U0010ffff", "🙂" * 50, *CARD_NUMBERS]),
    st.text(min_size=200, max_size=3000),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 99_999_999, 100_000_000, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, -0.0, 1e-300, 1.0, 1999.0, 1e308]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text_values)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=10)


# Card numbers as JSON numbers: the detector reads a number's digits too (SPEC §4).
CARD_INTEGERS = (4242424242424242, 5555555555554444, 378282246310005)


def _nest(depth: int, leaf: Any, in_objects: bool) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf} if in_objects else [leaf]
    return leaf


# One hostile JSON value, to put in place of one field of an otherwise valid request
# (tests/e2e/test_hostile_fields.py): the boundaries of every range a parser or a database
# column has (64-bit integers, doubles, the API's own length limits), every JSON type,
# text a database or a log mangles, card numbers in every shape, and nesting on both sides
# of the gateway's depth limit (request_input.MAX_JSON_DEPTH) and of orjson's.
hostile_values: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30, -(2**63), -(2**63) - 1, -(2**64) - 1, 0, -1, 1,
                     1999, 99_999_999, 100_000_000, 2**31, 2**53 + 1, True, False, None, {}, [], "", "0", "1999",
                     1e308, -1e308, -0.0, 0.0, 1.5, 1999.0, 5e-324, 1e19, *CARD_INTEGERS, 4242424242424242.0]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text_values,
    # Long text and text at the API's length limits (metadata keys 40, reasons 200,
    # metadata values 500, descriptions 1000), one either side.
    st.sampled_from([n * "a" for n in (40, 41, 200, 201, 500, 501, 1000, 1001, 10_000)]
                    + ["🙂" * 2_500, "\u202e" * 10_000, "\x00" * 10_000, "\x01\x1f\x7f\x85\u2028\u2029",
                       "\ufeffUSD", "US\u200bD", "\u202eDSU\u202c", "e\u0301", "\U0001f1fa\U0001f1f8"]),
    st.builds(_nest, st.sampled_from([1, 2, 29, 30, 31, 32, 33, 100, 1100]),
              st.sampled_from([1, "x", {}, [], None, 2**64]), st.booleans()),
    json_values,
)
# A hostile key name, for a field of an object the client names the keys of (metadata,
# productDetails).
hostile_keys: st.SearchStrategy[str] = st.one_of(
    text_values, st.sampled_from(["", "a" * 40, "a" * 41, "a" * 10_000, "\x00", "__proto__", *CARD_NUMBERS]))


def _encode(value: Any) -> str:
    # The standard library, not orjson: NaN, Infinity and integers past 64 bits go out as
    # written; lone surrogates cannot be sent in UTF-8 and are escaped by ensure_ascii.
    return json.dumps(value, allow_nan=True)


def _object(pairs: Sequence[tuple[str, Any]]) -> bytes:
    """A JSON object written pair by pair, so a key can appear twice."""
    return ("{" + ",".join(f"{_encode(k)}:{_encode(v)}" for k, v in pairs) + "}").encode()


def _nested(depth: int, key: str) -> bytes:
    return ("{" + _encode(key) + ":" + "[" * depth + "1" + "]" * depth + "}").encode()


def bodies(fields: Sequence[str], real: dict[str, Any] | None = None) -> st.SearchStrategy[bytes]:
    """Request bodies for an endpoint whose fields are ``fields``: objects of those fields
    (and strangers, and repeats) with values of every type, ``real`` values mixed in so a
    request gets past the first check; deep nesting, huge bodies, and bodies that are no
    JSON object at all."""
    real = real or {}
    keys = st.sampled_from(list(fields)) | st.text(max_size=12) if fields else st.text(max_size=12)
    value = json_values | (st.sampled_from(list(real.values())) if real else json_values)
    pairs = st.lists(st.tuples(keys, value), max_size=7)
    with_real = st.builds(lambda extra: _object([*real.items(), *extra]), pairs) if real else st.nothing()
    return st.one_of(
        st.builds(_object, pairs),
        with_real,
        st.builds(_nested, st.integers(min_value=20, max_value=5000), st.sampled_from(list(fields) or ["x"])),
        st.builds(lambda v: _encode(v).encode(), json_values),  # a scalar or a list, not an object
        st.binary(max_size=200),
        st.sampled_from([b"", b" ", b"{", b'{"amount":1', b"\xff\xfe{}", b'{"a":1}{"b":2}', b"null",
                         b'{"amount": 1e309}', b'{"amount": NaN}', b'{"amount": 0x10}', b"amount=5&currency=USD",
                         b'{"\\ud800": 1}', b'{"amount": "\\u0000"}', b"\x00" * 10,
                         b'{"x": "' + b"a" * (70 * 1024) + b'"}']),
    )


query_values = st.one_of(
    st.sampled_from(["-1", "1e309", "-1e309", "NaN", "nan", "inf", "0x10", "１", "", " ", "60.0000001", "61",
                     "-0", "1" * 400, "0.000001", "true", "[]", "{}", "%", "\x00", *CARD_NUMBERS]),
    st.text(max_size=30),
)


def query_strings(names: Sequence[str], real: dict[str, str] | None = None) -> st.SearchStrategy[str]:
    """Query strings: known parameters (repeated, empty, of every value) and strangers,
    percent-encoded; or raw garbage (broken escapes, stray separators)."""
    real = real or {}
    name = st.sampled_from(list(names)) | st.text(max_size=10) if names else st.text(max_size=10)
    value = query_values | (st.sampled_from(list(real.values())) if real else query_values)
    pairs = st.lists(st.tuples(name, value), max_size=6)
    encoded = st.builds(lambda ps: "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in ps), pairs)
    garbage = st.text(alphabet="=&%;+?/azAZ09_-.~", max_size=40)
    return st.one_of(encoded, garbage)


def path_ids(real: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Path segments of every shape, percent-encoded (never "." or "..": a client, httpx
    included, folds those away before sending)."""
    shapes = st.one_of(
        st.text(min_size=1, max_size=40),
        st.sampled_from(["pi_", "pi_x", "we_x", "pa_x", "pi_" + "a" * 2000, "%", "%2F", "\x00", "pi_\x00", " ",
                         *CARD_NUMBERS, *(f"{r}x" for r in real), *(r.upper() for r in real), *real]),
    )
    return shapes.filter(lambda s: s not in (".", "..")).map(lambda s: quote(s, safe=""))


def assert_no_leak(text: str) -> None:
    """No traceback, and none of the card numbers the requests carry echoed back (in any of
    their shapes: a body can hold one with spaces and an answer print its digits)."""
    assert not _TRACEBACK.search(text), text[:2000]
    for number in CARD_NUMBERS:
        digits = number.replace(" ", "").replace("-", "")
        assert number not in text and digits not in text, (number, text[:2000])


def assert_spec_error(status: int, body: bytes, request_id: str | None) -> dict[str, Any]:
    """SPEC §2's error shape with a code of SPEC's list, consistent with the status."""
    document = json.loads(body)
    error = document["error"]
    assert set(document) == {"error"}, document
    assert {"type", "code", "message", "requestId"} <= set(error) <= {"type", "code", "message", "param",
                                                                      "requestId"}, error
    assert error["code"] in SPEC_ERROR_CODES, error
    assert SPEC_ERROR_CODES[error["code"]] == (status, error["type"]), (status, error)
    assert isinstance(error["message"], str) and "\n" not in error["message"], error
    assert error["requestId"] == request_id, (error, request_id)
    return dict(error)


def check_answer(response: httpx.Response, data: bytes, *, json_errors: bool = True) -> dict[str, Any] | None:
    """What every answer to a hostile request must be: below 500, with ``X-Request-Id``,
    no traceback or card number in it; a refusal of a JSON route (``json_errors``) or any
    refusal in JSON is SPEC §2's error, returned (None for a success)."""
    assert response.status_code < 500, (response.status_code, data[:500])
    request_id = response.headers.get("x-request-id")
    assert request_id, response.headers
    assert_no_leak(data.decode("utf-8", "replace"))
    json_answer = response.headers.get("content-type", "").startswith("application/json")
    if response.status_code < 400 or not (json_errors or json_answer):
        return None
    assert json_answer, (response.status_code, response.headers, data[:500])
    return assert_spec_error(response.status_code, data, request_id)


def served_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) a Starlette app serves (HEAD is GET's): what a fuzzing plan must cover."""
    return sorted((method, route.path) for route in app.routes if isinstance(route, Route)
                  for method in (route.methods or ()) if method != "HEAD")
