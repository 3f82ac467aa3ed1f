"""The hosted checkout in a real browser: three origins, real WebCrypto, real CSP.

Gateway ``http://127.0.0.1:<p1>`` (the stand-in of conftest.py), merchant
``http://localhost:<p2>`` (registered origin), stranger ``http://localhost:<p3>``.
The same flows against the real gateway process: ``test_checkout_gateway.py``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from paygate_server.cards import card_brand, luhn_valid
from tests.browser.conftest import console_of

PAN = "4242424242424242"
CVC = "123"


def _frame(page: Any) -> Any:
    """The checkout frame of a merchant page (a Playwright Frame)."""
    for frame in page.frames:
        if "/checkout/v1/frame" in frame.url:
            return frame
    raise AssertionError(f"no checkout frame among {[f.url for f in page.frames]}")


def _open_checkout(page: Any, sites: Any, checkout: Any) -> Any:
    page.goto(sites.merchant_page(checkout))
    page.wait_for_function("window.__paygate.ready === 1")
    return _frame(page)


def _fill_card(
    frame: Any, number: str = "4242 4242 4242 4242", expiry: str = "12 / 34",
    cvc: str = CVC, name: str = "Jane Doe",
) -> None:
    frame.locator("#pg-number").press_sequentially(number)
    frame.locator("#pg-expiry").press_sequentially(expiry)
    frame.locator("#pg-cvc").press_sequentially(cvc)
    frame.locator("#pg-name").press_sequentially(name)


def _error_of(frame: Any, field_id: str) -> tuple[str | None, str]:
    """(aria-invalid, text of the elements named by aria-describedby) of one input."""
    result = frame.evaluate(
        """(id) => {
            const input = document.getElementById(id);
            const described = (input.getAttribute("aria-describedby") || "").split(/\\s+/)
                .map((ref) => document.getElementById(ref))
                .filter((el) => el && el.classList.contains("pg-error"))
                .map((el) => el.textContent.trim()).join(" ");
            return [input.getAttribute("aria-invalid"), described];
        }""",
        field_id,
    )
    return result[0], result[1]


def test_card_is_tokenized_end_to_end_without_leaking(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    checkout = sites.new_checkout()
    page = page_factory()
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request))
    console_errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    frame = _open_checkout(page, sites, checkout)

    assert frame.locator("#pg-amount").inner_text() == "$19.99"
    assert frame.locator("#pg-merchant-name").inner_text() == "Acme Coffee Roasters"
    _fill_card(frame)
    assert frame.locator("#pg-number").input_value() == "4242 4242 4242 4242"
    assert frame.locator("#pg-expiry").input_value() == "12 / 34"
    assert frame.locator("#pg-brand").get_attribute("data-brand") == "visa"

    # The merchant page cannot read into the frame: cross-origin access throws.
    outcome = page.evaluate(
        """() => {
            const frame = document.querySelector("iframe");
            try {
                return "read:" + frame.contentWindow.document.getElementById("pg-number").value;
            } catch (error) {
                return "blocked:" + error.name;
            }
        }"""
    )
    assert outcome == "blocked:SecurityError"
    assert page.evaluate("() => document.querySelector('iframe').contentDocument") is None

    frame.locator("#pg-submit").click()
    page.wait_for_function("window.__paygate.tokens.length === 1")
    received = page.evaluate("window.__paygate")
    token = received["tokens"][0]
    assert re.fullmatch(r"tok_test[0-9a-f]{24}", token["token"])
    assert token["card"] == {"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2034}
    assert received["errors"] == []

    # The stand-in gateway decrypted exactly what was typed.
    assert len(checkout.decrypted) == 1
    card = checkout.decrypted[0]
    assert (card.number, card.cvc, card.exp_month, card.exp_year, card.name) == (
        PAN, CVC, 12, 2034, "Jane Doe",
    )

    # Nothing on the wire carries the card in the clear.
    token_posts = [r for r in requests if r.url.endswith("/checkout/v1/tokens")]
    assert len(token_posts) == 1
    body = json.loads(token_posts[0].post_data_buffer)
    assert set(body) == {"clientSecret", "encryptedCard"}
    assert body["clientSecret"] == checkout.client_secret
    assert re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*){4}", body["encryptedCard"])
    for request in requests:
        data = request.post_data_buffer or b""
        for needle in (PAN, "4242 4242 4242 4242", "4242-4242"):
            assert needle.encode() not in data, request.url
            assert needle not in request.url
        assert b'"cvc"' not in data and f'"{CVC}"'.encode() not in data
        assert b"Jane" not in data
    # Only the gateway and the merchant were contacted.
    hosts = {re.match(r"https?://[^/]+", r.url).group(0) for r in requests}  # type: ignore[union-attr]
    assert hosts <= {sites.gateway, sites.merchant}

    # The frame shows the outcome and no longer holds the card.
    assert "ending in 4242" in frame.locator("#pg-done").inner_text()
    values = frame.evaluate(
        "() => ['pg-number','pg-expiry','pg-cvc','pg-name'].map((id) => document.getElementById(id).value)"
    )
    assert values == ["", "", "", ""]
    # No CSP violation or script error anywhere (the frame runs under a strict CSP).
    assert [e for e in console_errors if "favicon" not in e] == []


def test_frame_resizes_the_iframe_to_its_content(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    page = page_factory()
    frame = _open_checkout(page, sites, sites.new_checkout())
    content = frame.evaluate("() => Math.ceil(document.documentElement.getBoundingClientRect().height)")
    page.wait_for_function(
        "(h) => document.querySelector('iframe').style.height === h + 'px'", arg=content
    )
    # An error message makes the form taller; the iframe follows.
    frame.locator("#pg-submit").click()
    taller = frame.evaluate("() => Math.ceil(document.documentElement.getBoundingClientRect().height)")
    assert taller > content
    page.wait_for_function(
        "(h) => document.querySelector('iframe').style.height === h + 'px'", arg=taller
    )


def test_frame_refuses_to_render_for_an_unregistered_origin(
    checkout_sites: Any, page_factory: Any
) -> None:
    sites = checkout_sites
    checkout = sites.new_checkout()
    page = page_factory()
    console = console_of(page)
    # The stranger copies the merchant's page, secret and all.
    page.goto(sites.merchant_page(checkout, origin=sites.stranger))
    page.wait_for_function("window.__paygate.errors.length === 1")
    received = page.evaluate("window.__paygate")
    assert received["errors"] == [
        {"code": "frame_unavailable", "message": "The payment form could not be loaded."}
    ]
    assert received["ready"] == 0
    # The gateway did serve the page; the browser refused to show it (frame-ancestors).
    assert checkout.frame_requests == 1
    child_frames = page.frames[1:]
    assert len(child_frames) == 1
    assert "/checkout/v1/frame" not in child_frames[0].url
    assert child_frames[0].locator("#pg-number").count() == 0
    assert any("frame-ancestors" in text for text in console)


def test_frame_with_unknown_client_secret_is_not_served(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    page = page_factory()
    response = page.request.get(f"{sites.gateway}/checkout/v1/frame?clientSecret=pi_nope_secret_x")
    assert response.status == 404
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.goto(f"{sites.merchant}/shop/checkout?secret=pi_nope_secret_x")
    page.wait_for_function("window.__paygate.errors.length === 1")
    assert page.evaluate("window.__paygate.errors[0].code") == "frame_unavailable"


def test_checkout_js_ignores_messages_not_from_its_frame(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    page = page_factory()
    _open_checkout(page, sites, sites.new_checkout())
    height_before = page.evaluate("document.querySelector('iframe').style.height")

    # 1. Another frame, on another origin, posts forged messages to the merchant page.
    page.evaluate(
        """(url) => {
            const other = document.createElement("iframe");
            other.src = url;
            document.body.appendChild(other);
        }""",
        f"{sites.stranger}/foreign-poster?tag=sibling",
    )
    # 2. The merchant page's own window posts them (right window type, wrong source/origin).
    page.evaluate(
        """() => {
            ["paygate:token", "paygate:error", "paygate:resize"].forEach((type) =>
                window.postMessage({type, token: "tok_self", height: 1, code: "x", tag: "self"}, "*"));
        }"""
    )
    # 3. The checkout iframe itself is navigated to a foreign page: same event.source as
    #    the real frame, but not the gateway's origin.
    page.evaluate(
        "(url) => { window.__handle.iframe.src = url; }",
        f"{sites.stranger}/foreign-poster?tag=hijacked",
    )
    page.wait_for_function(
        """() => {
            const tags = window.__paygate.raw.map((m) => m.tag);
            return tags.filter((t) => t === "sibling").length === 4
                && tags.filter((t) => t === "self").length === 3
                && tags.filter((t) => t === "hijacked").length === 4;
        }"""
    )
    received = page.evaluate("window.__paygate")
    assert received["tokens"] == []
    assert received["errors"] == []
    assert received["ready"] == 1
    assert page.evaluate("document.querySelector('iframe').style.height") == height_before
    # The forged messages really did arrive, from the stranger's origin.
    origins = {m["origin"] for m in received["raw"] if m["tag"] in ("sibling", "hijacked")}
    assert origins == {sites.stranger}


def test_invalid_number_is_flagged_as_the_customer_types(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    page = page_factory()
    frame = _open_checkout(page, sites, sites.new_checkout())
    number = frame.locator("#pg-number")
    number.press_sequentially("4242 4242 4242 424")
    assert _error_of(frame, "pg-number") == ("false", "")  # incomplete while typing: no error yet
    number.press_sequentially("1")
    assert _error_of(frame, "pg-number") == ("true", "Your card number is invalid.")
    assert "pg-invalid" in (number.get_attribute("class") or "")
    # Fixing the last digit clears it.
    number.press("Backspace")
    number.press_sequentially("2")
    assert _error_of(frame, "pg-number") == ("false", "")


def test_incomplete_fields_are_reported_on_blur_and_submit(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    checkout = sites.new_checkout()
    page = page_factory()
    frame = _open_checkout(page, sites, checkout)
    frame.locator("#pg-number").press_sequentially("4242 42")
    frame.locator("#pg-number").press("Tab")
    assert frame.evaluate("document.activeElement.id") == "pg-expiry"  # focus order
    assert _error_of(frame, "pg-number") == ("true", "Your card number is incomplete.")

    frame.locator("#pg-submit").click()
    assert _error_of(frame, "pg-expiry") == ("true", "Enter your card's expiry date.")
    assert _error_of(frame, "pg-cvc") == ("true", "Enter your card's security code.")
    assert _error_of(frame, "pg-name") == ("true", "Enter the name on your card.")
    assert frame.evaluate("document.activeElement.id") == "pg-number"  # first invalid field
    assert checkout.decrypted == []
    assert not [r for r in sites.token_requests if r.get("clientSecret") == checkout.client_secret]


def test_expiry_validation(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    page = page_factory()
    frame = _open_checkout(page, sites, sites.new_checkout())
    expiry = frame.locator("#pg-expiry")
    expiry.press_sequentially("01 / 20")
    assert expiry.input_value() == "01 / 20"
    assert _error_of(frame, "pg-expiry") == ("true", "Your card has expired.")
    expiry.fill("")
    expiry.press_sequentially("13")
    assert _error_of(frame, "pg-expiry") == ("true", "Your card's expiry month is invalid.")
    expiry.fill("")
    expiry.press_sequentially("4")  # no month starts with 4: April
    assert expiry.input_value() == "04 / "
    expiry.press_sequentially("45")
    assert expiry.input_value() == "04 / 45"
    assert _error_of(frame, "pg-expiry") == ("false", "")
    # Backspace walks back through the year, then over the separator into the month.
    expiry.press("Backspace")
    expiry.press("Backspace")
    assert expiry.input_value() == "04"
    expiry.press_sequentially("3")
    assert expiry.input_value() == "04 / 3"
    expiry.press("Backspace")
    assert expiry.input_value() == "04"
    expiry.press("Backspace")
    assert expiry.input_value() == "0"
    # And from a separator the formatter added: "1" → "1", "2" → "12 / ", Backspace → "1".
    expiry.fill("")
    expiry.press_sequentially("12")
    assert expiry.input_value() == "12 / "
    expiry.press("Backspace")
    assert expiry.input_value() == "1"


def test_amex_formatting_and_cvc(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    page = page_factory()
    frame = _open_checkout(page, sites, sites.new_checkout())
    frame.locator("#pg-number").press_sequentially("378282246310005999")  # extra digits dropped
    assert frame.locator("#pg-number").input_value() == "3782 822463 10005"
    assert frame.locator("#pg-brand").get_attribute("data-brand") == "amex"
    assert frame.locator("#pg-brand-label").inner_text() == "American Express"
    assert _error_of(frame, "pg-number") == ("false", "")
    assert "front" in frame.locator("#pg-cvc-hint").inner_text()
    frame.locator("#pg-cvc").press_sequentially("12a345")
    assert frame.locator("#pg-cvc").input_value() == "1234"


def test_editing_in_the_middle_keeps_the_caret_and_paste_is_formatted(
    checkout_sites: Any, page_factory: Any
) -> None:
    sites = checkout_sites
    page = page_factory()
    frame = _open_checkout(page, sites, sites.new_checkout())
    number = frame.locator("#pg-number")
    number.fill("4242-4242-4242-4242")  # pasted with dashes
    assert number.input_value() == "4242 4242 4242 4242"

    def caret() -> int:
        return int(frame.evaluate("document.getElementById('pg-number').selectionStart"))

    # Backspace right after a separator removes the digit before it (not just the space,
    # which re-formatting would put back), and the groups re-flow.
    frame.evaluate("document.getElementById('pg-number').setSelectionRange(5, 5)")
    number.press("Backspace")
    assert number.input_value() == "4244 2424 2424 242"
    assert caret() == 3
    # Typing in the middle keeps the caret after the new digit.
    number.press_sequentially("2")
    assert number.input_value() == "4242 4242 4242 4242"
    assert caret() == 4
    # Delete in front of a separator removes the digit after it.
    number.press("Delete")
    assert number.input_value() == "4242 2424 2424 242"
    assert caret() == 4
    frame.evaluate("document.getElementById('pg-number').setSelectionRange(7, 7)")
    number.press("Delete")
    assert number.input_value() == "4242 2442 4242 42"
    assert caret() == 7


def test_enter_submits_and_autofilled_expiry_is_understood(
    checkout_sites: Any, page_factory: Any
) -> None:
    sites = checkout_sites
    checkout = sites.new_checkout(currency="JPY", amount=1999)
    page = page_factory()
    frame = _open_checkout(page, sites, checkout)
    assert frame.locator("#pg-amount").inner_text() == "¥1,999"
    frame.locator("#pg-number").press_sequentially("5555 5555 5555 4444")
    frame.locator("#pg-expiry").fill("07/2031")  # what autofill may put in a cc-exp field
    assert frame.locator("#pg-expiry").input_value() == "07 / 31"
    frame.locator("#pg-cvc").press_sequentially("321")
    frame.locator("#pg-name").press_sequentially("Kenji Sato")
    frame.locator("#pg-name").press("Enter")
    page.wait_for_function("window.__paygate.tokens.length === 1")
    assert page.evaluate("window.__paygate.tokens[0].card") == {
        "brand": "mastercard", "last4": "4444", "expMonth": 7, "expYear": 2031,
    }
    assert [(c.number, c.cvc, c.name) for c in checkout.decrypted] == [
        ("5555555555554444", "321", "Kenji Sato")
    ]


def test_accessibility_attributes(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    page = page_factory()
    frame = _open_checkout(page, sites, sites.new_checkout())
    expected = {
        "pg-number": ("cc-number", "numeric", "Card number"),
        "pg-expiry": ("cc-exp", "numeric", "Expiry date"),
        "pg-cvc": ("cc-csc", "numeric", "Security code"),
        "pg-name": ("cc-name", None, "Name on card"),
    }
    for field_id, (autocomplete, inputmode, label) in expected.items():
        field = frame.locator(f"#{field_id}")
        assert field.get_attribute("autocomplete") == autocomplete
        assert field.get_attribute("inputmode") == inputmode
        assert field.get_attribute("aria-invalid") == "false"
        assert frame.locator(f"label[for={field_id}]").inner_text() == label
        assert frame.get_by_label(label, exact=True).count() == 1
        described = (field.get_attribute("aria-describedby") or "").split()
        assert f"{field_id}-error" in described
    # Tab order follows the visual order, ending on the button.
    frame.locator("#pg-number").focus()
    order = []
    for _ in range(4):
        page.keyboard.press("Tab")
        order.append(frame.evaluate("document.activeElement.id"))
    assert order == ["pg-expiry", "pg-cvc", "pg-name", "pg-submit"]


def test_gateway_errors_reach_the_merchant_page(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    checkout = sites.new_checkout(
        fail_with=(429, "rate_limited", "rate_limited", "Too many attempts. Try again later.")
    )
    page = page_factory()
    frame = _open_checkout(page, sites, checkout)
    _fill_card(frame)
    frame.locator("#pg-submit").click()
    page.wait_for_function("window.__paygate.errors.length === 1")
    assert page.evaluate("window.__paygate.errors") == [
        {"code": "rate_limited", "message": "Too many attempts. Try again later."}
    ]
    assert frame.locator("#pg-form-error").inner_text() == "Too many attempts. Try again later."
    # The customer can try again: the values are kept and the button works.
    assert frame.locator("#pg-number").input_value() == "4242 4242 4242 4242"
    assert frame.locator("#pg-submit").is_enabled()
    assert page.evaluate("window.__paygate.tokens") == []


def test_browser_and_server_agree_on_brands_and_luhn(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    page = page_factory()
    frame = _open_checkout(page, sites, sites.new_checkout())
    numbers = [
        "4242424242424242", "5555555555554444", "2223003122003222", "2720991234567890",
        "2721001234567890", "378282246310005", "6011111111111117", "6221260000000000",
        "6229250000000000", "6221250000000000", "6200000000000005", "8100000000000000",
        "3566002020360505", "3590000000000000", "30569309025904", "3095000000000000",
        "36227206271667", "38520000023237", "6445644564456445", "6500000000000002",
        "1234567812345678", "4", "37", "62212", "", "4242424242424241",
    ]
    browser_view = frame.evaluate(
        "(ns) => ns.map((n) => [PaygateCard.brandOf(n), PaygateCard.luhnValid(n)])", numbers
    )
    assert browser_view == [[card_brand(n), luhn_valid(n)] for n in numbers]


def test_phone_width_layout(checkout_sites: Any, page_factory: Any) -> None:
    sites = checkout_sites
    page = page_factory(width=390, height=844, device_scale_factor=2, is_mobile=True, has_touch=True)
    frame = _open_checkout(page, sites, sites.new_checkout())
    # Nothing overflows horizontally, and the fields are comfortably tappable.
    assert frame.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    box = frame.locator("#pg-number").bounding_box()
    assert box is not None and box["height"] >= 44
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
