"""The hosted checkout as a shopper and an attacker meet it, in real Chromium: double
submits, network failures, what is left behind after success, Amex, hostile messages.

Uses the stand-in gateway of conftest.py (``checkout_sites``); the real gateway's flows
are in ``test_checkout_gateway.py``.
"""

from __future__ import annotations

import time
from typing import Any

from tests.browser.conftest import console_of
from tests.browser.test_checkout_browser import CVC, PAN, _error_of, _fill_card, _open_checkout
from tests.support.eventually import eventually_sync


def _token_posts(sites: Any, checkout: Any) -> int:
    return len([r for r in sites.token_requests if r.get("clientSecret") == checkout.client_secret])


def test_double_click_and_enter_submit_once(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    checkout = sites.new_checkout()
    page = page_factory()
    frame = _open_checkout(page, sites, checkout)
    _fill_card(frame)
    frame.locator("#pg-submit").dblclick()
    frame.locator("#pg-name").press("Enter")
    page.wait_for_function("window.__paygate.tokens.length === 1")
    assert _token_posts(sites, checkout) == 1
    assert len(checkout.decrypted) == 1
    assert page.evaluate("window.__paygate.tokens.length") == 1


def test_network_failure_is_retryable_and_success_leaves_nothing_behind(
    checkout_sites: Any, page_factory: Any
) -> None:
    sites = checkout_sites
    checkout = sites.new_checkout()
    page = page_factory()
    console = console_of(page)
    frame = _open_checkout(page, sites, checkout)
    _fill_card(frame)
    page.route("**/checkout/v1/tokens", lambda route: route.abort("internetdisconnected"))
    frame.locator("#pg-submit").click()
    page.wait_for_function("window.__paygate.errors.length === 1")
    assert page.evaluate("window.__paygate.errors[0].code") == "network_error"
    assert "connection" in frame.locator("#pg-form-error").inner_text()
    assert frame.locator("#pg-form-error").get_attribute("role") == "alert"
    # What the shopper typed is still there, and the button works again.
    assert frame.locator("#pg-number").input_value() == "4242 4242 4242 4242"
    assert frame.locator("#pg-cvc").input_value() == CVC
    assert frame.locator("#pg-submit").is_enabled()

    page.unroute("**/checkout/v1/tokens")
    frame.locator("#pg-submit").click()
    page.wait_for_function("window.__paygate.tokens.length === 1")
    assert frame.locator("#pg-form-error").inner_text() == ""
    # After success nothing of the card is left in the frame's DOM or storage.
    left = frame.evaluate(
        """() => [
            document.documentElement.outerHTML,
            Array.from(document.querySelectorAll("input")).map((i) => i.value).join("|"),
            (() => {
                // Chromium may deny a third-party frame its storage: then nothing is kept.
                try { return localStorage.length + sessionStorage.length; } catch (denied) { return 0; }
            })(),
            location.href,
        ]"""
    )
    html, values, stored, url = left
    assert values == "|||"
    assert stored == 0
    for needle in (PAN, "4242 4242 4242 4242", "Jane Doe"):
        assert needle not in html and needle not in url
    assert f'value="{CVC}"' not in html
    assert not [text for text in console if "4242" in text or CVC in text]


def test_amex_needs_a_four_digit_cvc(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    checkout = sites.new_checkout()
    page = page_factory()
    frame = _open_checkout(page, sites, checkout)
    _fill_card(frame, number="3782 822463 10005", cvc="123")
    frame.locator("#pg-submit").click()
    assert _error_of(frame, "pg-cvc") == ("true", "Your card's security code is incomplete.")
    assert _token_posts(sites, checkout) == 0
    frame.locator("#pg-cvc").press_sequentially("4")
    frame.locator("#pg-submit").click()
    page.wait_for_function("window.__paygate.tokens.length === 1")
    assert (checkout.decrypted[0].number, checkout.decrypted[0].cvc) == ("378282246310005", "1234")


def test_luhn_failure_is_never_sent(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    checkout = sites.new_checkout()
    page = page_factory()
    frame = _open_checkout(page, sites, checkout)
    _fill_card(frame, number="4242 4242 4242 4241")
    frame.locator("#pg-submit").click()
    assert _error_of(frame, "pg-number") == ("true", "Your card number is invalid.")
    assert frame.evaluate("document.activeElement.id") == "pg-number"
    assert _token_posts(sites, checkout) == 0


def test_hostile_message_shapes_from_the_frame_origin_are_sanitized(
    checkout_sites: Any, page_factory: Any
) -> None:
    """Even messages from the gateway's own frame reach the merchant's callbacks only in
    the documented shapes: a token string, a card of four known fields, a code/message."""
    sites = checkout_sites
    page = page_factory()
    frame = _open_checkout(page, sites, sites.new_checkout())
    frame.evaluate(
        """() => {
            const card = JSON.parse('{"__proto__": {"polluted": 1}, "brand": "visa", "last4": "4242",'
                + ' "expMonth": 12, "expYear": 2034, "extra": "<img src=x>", "constructor": {"prototype": 1}}');
            const post = (m) => parent.postMessage(m, "*");
            post({type: "paygate:token", token: "x".repeat(1000000)});
            post({type: "paygate:token", token: {toString: null}});
            post({type: "paygate:token", token: "tok_ok", card: card});
            post({type: "paygate:token", token: "tok_str", card: "a string"});
            post({type: "paygate:error", code: 7, message: {a: 1}});
            post({type: "paygate:error", code: "c".repeat(100000), message: "m".repeat(100000)});
            post({type: "paygate:resize", height: "100"});
            post({type: "__proto__"});
            post({type: "paygate:ready", tag: "last"});
        }"""
    )
    # Messages from one window arrive in order: once the last is in, all were handled.
    page.wait_for_function("window.__paygate.raw.some((m) => m.tag === 'last')")
    received = page.evaluate(
        """() => window.__paygate.tokens.map((t) => [t.token, t.card === null ? null :
              [Object.getPrototypeOf(t.card) === Object.prototype, Object.keys(t.card).sort(),
               Object.prototype.hasOwnProperty.call(t.card, "__proto__")]])"""
    )
    assert received == [
        ["tok_ok", [True, ["brand", "expMonth", "expYear", "last4"], False]],
        ["tok_str", None],
    ]
    errors = page.evaluate("window.__paygate.errors.map((e) => [e.code, e.message.length])")
    assert errors == [["api_error", 0], ["api_error", 0]]
    assert page.evaluate("({}).polluted") is None
    assert page.evaluate("window.__paygate.ready") == 1


def test_a_pasted_expiry_with_a_four_digit_year_is_understood(
    checkout_sites: Any, page_factory: Any
) -> None:
    """"12 / 2034" as a password manager shows it: 9 characters. A 7-character limit on
    the field cut it to "12 / 20" before the formatter saw it — "Your card has expired."."""
    sites = checkout_sites
    page = page_factory()
    frame = _open_checkout(page, sites, sites.new_checkout())
    expiry = frame.locator("#pg-expiry")
    for pasted in ("12 / 2034", " 12 / 2034 ", "12 - 2034"):
        expiry.fill("")
        expiry.focus()
        page.keyboard.insert_text(pasted)  # what a paste does: one insertText
        assert expiry.input_value() == "12 / 34", pasted
        assert _error_of(frame, "pg-expiry") == ("false", ""), pasted
    for pasted in ("1/34", "1/2034", "1 - 2034"):
        expiry.fill("")
        expiry.focus()
        page.keyboard.insert_text(pasted)
        assert expiry.input_value() == "01 / 34", pasted
    # Typing still stops at four digits.
    expiry.fill("")
    expiry.press_sequentially("123456")
    assert expiry.input_value() == "12 / 34"


def test_a_shopper_whose_clock_is_off_can_still_pay(checkout_sites: Any, page_factory: Any) -> None:
    """generationTime is checked against the gateway's clock (5 minutes ahead at most, 24 h
    behind): a device clock set an hour fast, or a day slow, must not make every attempt
    fail with "could not be read" — retrying would never help."""
    sites = checkout_sites
    for offset_s in (3600, -25 * 3600):
        checkout = sites.new_checkout()
        page = page_factory()
        page.clock.install(time=time.time() + offset_s)
        page.clock.resume()  # the wrong time runs on like a real clock
        frame = _open_checkout(page, sites, checkout)
        _fill_card(frame)
        frame.locator("#pg-submit").click()
        page.wait_for_function("window.__paygate.tokens.length + window.__paygate.errors.length === 1")
        assert page.evaluate("window.__paygate.errors") == [], offset_s
        generated = checkout.decrypted[0].generation_time.timestamp()
        assert abs(generated - time.time()) < 120, offset_s


def test_a_request_that_never_answers_ends_in_a_retryable_error(
    checkout_sites: Any, page_factory: Any
) -> None:
    """A connection that hangs (no reset, no answer) must not leave the shopper looking
    at "Processing…" for minutes: after 30 s it is a network error, and they can retry."""
    sites = checkout_sites
    checkout = sites.new_checkout()
    page = page_factory()
    page.clock.install()
    held: list[Any] = []
    page.route("**/checkout/v1/tokens", lambda route: held.append(route))
    frame = _open_checkout(page, sites, checkout)
    _fill_card(frame)
    frame.locator("#pg-submit").click()
    frame.wait_for_function("document.getElementById('pg-submit').disabled")
    eventually_sync(lambda: len(held) == 1, timeout=10, interval=0.05, what="the token request")
    page.clock.run_for(29_000)
    assert frame.locator("#pg-submit").is_disabled()
    page.clock.run_for(2_000)
    page.wait_for_function("window.__paygate.errors.length === 1")
    assert page.evaluate("window.__paygate.errors[0].code") == "network_error"
    assert frame.locator("#pg-number").input_value() == "4242 4242 4242 4242"
    assert frame.locator("#pg-submit").is_enabled()
    page.unroute("**/checkout/v1/tokens")
    frame.locator("#pg-submit").click()
    page.wait_for_function("window.__paygate.tokens.length === 1")


def test_a_pasted_cvc_with_spaces_keeps_all_its_digits(checkout_sites: Any, page_factory: Any) -> None:
    """A maxlength on the field cut " 1234" to " 123" before the form saw it."""
    sites = checkout_sites
    page = page_factory()
    frame = _open_checkout(page, sites, sites.new_checkout())
    cvc = frame.locator("#pg-cvc")
    for number, pasted, expected in (("3782 822463 10005", " 1234", "1234"),
                                     ("4242 4242 4242 4242", " 123 ", "123"),
                                     ("4242 4242 4242 4242", "1234", "123")):
        frame.locator("#pg-number").fill(number)
        cvc.fill("")
        cvc.focus()
        page.keyboard.insert_text(pasted)
        assert cvc.input_value() == expected, pasted
