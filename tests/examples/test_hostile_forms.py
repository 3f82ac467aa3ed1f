"""Hostile input against every route of the sample shop (in-process, its gateway faked):
fields of every shape, query garbage, path ids of every shape, wrong content types, broken
CSRF tokens, signed in as the shop's admin. Every answer is below 500 with no traceback
and no card number shown back. The routes are walked from the app: a new one is fuzzed
without being listed."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from tests.examples.conftest import ShopHarness
from tests.support.hostile import assert_no_leak, path_ids, query_strings, text_values

pytestmark = pytest.mark.slow

FIELDS = ("csrf", "sku", "quantity", "amount", "password", "reason", "wait", "items")


def _routes(app: Any) -> list[tuple[str, str]]:
    return sorted((method, route.path) for route in app.routes if isinstance(route, Route)
                  for method in (route.methods or ()) if method != "HEAD")


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(data=st.data())
async def test_hostile_shop_requests(shop: ShopHarness, data: st.DataObject) -> None:
    routes = _routes(shop.app)
    assert ("POST", "/cart/add") in routes and ("POST", "/admin/orders/{order_id}/refund") in routes
    if "tw_admin" not in shop.http.cookies:
        await shop.login()
    page = await shop.http.get("/admin")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    csrf = token.group(1) if token else ""
    method, path = data.draw(st.sampled_from(routes))
    order_ids = [await shop.place_order()] if "{order_id}" in path else []
    target = re.sub(r"\{[a-z_]+\}", lambda _: data.draw(path_ids(order_ids)), path)
    query = data.draw(query_strings(("wait", "after", "sku")))
    target += f"?{query}" if query else ""
    pairs = data.draw(st.lists(st.tuples(st.sampled_from(FIELDS) | st.text(max_size=8),
                                         text_values | st.just(csrf)), max_size=6))
    body = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs).encode()
    content_type = data.draw(st.sampled_from(["application/x-www-form-urlencoded"] * 3 + ["", "application/json",
                                                                                          "text/plain"]))
    r = await shop.http.request(method, target, content=body if method == "POST" else b"",
                                headers={"content-type": content_type}, timeout=10)
    assert r.status_code < 500, (method, target, body[:300], r.text[:1000])
    assert_no_leak(r.text)
