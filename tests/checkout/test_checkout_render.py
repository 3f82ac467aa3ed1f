"""The frame page: escaping, the JSON config block, no inline script, assets."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest

from paygate_checkout import (
    STATIC_FILES,
    FrameContext,
    render_frame,
    render_frame_error,
    static_dir,
    templates_dir,
)

ORIGIN = "https://shop.example"


def _context(**overrides: Any) -> FrameContext:
    values: dict[str, Any] = {
        "merchant_name": "Acme Coffee",
        "amount": 1999,
        "currency": "USD",
        "client_secret": "pi_123_secret_abc",
        "allowed_origins": (ORIGIN, "https://www.shop.example"),
    }
    values.update(overrides)
    return FrameContext(**values)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.links: list[dict[str, str | None]] = []
        self.inputs: dict[str, dict[str, str | None]] = {}
        self.event_handler_attributes: list[str] = []
        self.style_attributes = 0
        self._in_script: dict[str, str | None] | None = None
        self._data = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.event_handler_attributes += [name for name in attributes if name.startswith("on")]
        self.style_attributes += "style" in attributes
        if tag == "script":
            self._in_script, self._data = attributes, ""
        elif tag == "link":
            self.links.append(attributes)
        elif tag == "input" and attributes.get("id"):
            self.inputs[str(attributes["id"])] = attributes

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            self._data += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_script is not None:
            self.scripts.append((self._in_script, self._data))
            self._in_script = None


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _config(page: _Page) -> dict[str, Any]:
    blocks = [body for attrs, body in page.scripts if attrs.get("type") == "application/json"]
    assert len(blocks) == 1
    return json.loads(blocks[0])


def test_no_inline_script_no_handlers_no_inline_style() -> None:
    page = _parse(render_frame(_context()))
    for attrs, body in page.scripts:
        if attrs.get("type") == "application/json":
            continue
        assert attrs.get("src"), "an executable script must come from a file"
        assert body.strip() == ""
    assert page.event_handler_attributes == []
    assert page.style_attributes == 0


def test_assets_are_same_origin_and_versioned() -> None:
    page = _parse(render_frame(_context()))
    urls = [str(attrs["src"]) for attrs, _ in page.scripts if attrs.get("src")]
    urls += [str(link["href"]) for link in page.links]
    assert sorted(url.split("?")[0].rsplit("/", 1)[1] for url in urls) == [
        "card.js", "frame.css", "frame.js", "jwe.js",
    ]
    for url in urls:
        assert url.startswith("/checkout/v1/static/") and "?v=" in url


def test_config_block() -> None:
    page = _parse(render_frame(_context()))
    assert _config(page) == {
        "clientSecret": "pi_123_secret_abc",
        "merchantOrigin": ORIGIN,
        "keysUrl": "/checkout/v1/keys",
        "tokensUrl": "/checkout/v1/tokens",
        "submitLabel": "Pay $19.99",
    }


def test_hostile_values_are_escaped() -> None:
    html = render_frame(
        _context(
            merchant_name='<script>alert("x")</script>',
            description="<img src=x onerror=alert(1)>",
            client_secret="pi_1_secret_</script><script>alert(1)</script>",
        )
    )
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    page = _parse(html)
    assert page.event_handler_attributes == []
    # The JSON block still round-trips the exact value.
    assert _config(page)["clientSecret"] == "pi_1_secret_</script><script>alert(1)</script>"


def test_merchant_origin_choice() -> None:
    assert _config(_parse(render_frame(_context())))["merchantOrigin"] == ORIGIN
    chosen = render_frame(_context(), parent_origin="https://www.shop.example")
    assert _config(_parse(chosen))["merchantOrigin"] == "https://www.shop.example"
    ignored = render_frame(_context(), parent_origin="https://evil.example")
    assert _config(_parse(ignored))["merchantOrigin"] == ORIGIN
    explicit = render_frame(_context(merchant_origin="https://www.shop.example"))
    assert _config(_parse(explicit))["merchantOrigin"] == "https://www.shop.example"


def test_merchant_origin_must_be_allowed() -> None:
    with pytest.raises(ValueError):
        render_frame(_context(merchant_origin="https://evil.example"))
    with pytest.raises(ValueError):
        render_frame(_context(allowed_origins=()))
    with pytest.raises(ValueError):
        render_frame(_context(allowed_origins=("*",)))


def test_amount_and_badges() -> None:
    html = render_frame(_context(amount=1999, currency="JPY", test_mode=True, description="Mug"))
    assert "¥1,999" in html
    assert "Pay ¥1,999" in html
    assert "Test mode" in html
    assert "Mug" in html
    plain = render_frame(_context())
    assert "Test mode" not in plain and "pg-description" not in plain
    assert _config(_parse(plain))["submitLabel"] == "Pay $19.99" and "Authorize" not in plain


def test_a_manual_capture_checkout_says_authorize() -> None:
    html = render_frame(_context(amount=1999, currency="USD", authorize_only=True))
    assert "Authorize $19.99" in html and "Pay $19.99" not in html
    assert _config(_parse(html))["submitLabel"] == "Authorize $19.99"
    assert "charged when" in html and 'id="pg-hold-note"' in html


def test_form_fields() -> None:
    inputs = _parse(render_frame(_context())).inputs
    assert set(inputs) == {"pg-number", "pg-expiry", "pg-cvc", "pg-name"}
    assert inputs["pg-number"]["autocomplete"] == "cc-number"
    assert inputs["pg-expiry"]["autocomplete"] == "cc-exp"
    assert inputs["pg-cvc"]["autocomplete"] == "cc-csc"
    assert inputs["pg-name"]["autocomplete"] == "cc-name"
    for field in ("pg-number", "pg-expiry", "pg-cvc"):
        assert inputs[field]["inputmode"] == "numeric"
    for field, attributes in inputs.items():
        assert attributes["aria-invalid"] == "false"
        assert f"{field}-error" in str(attributes["aria-describedby"]).split()
        # No name that a browser would submit with a card number to anyone.
        assert attributes.get("value") in (None, "")


def test_client_secret_is_not_in_repr() -> None:
    assert "pi_123_secret_abc" not in repr(_context())


def test_error_page_escapes() -> None:
    html = render_frame_error("<b>gone</b>")
    assert "&lt;b&gt;gone&lt;/b&gt;" in html
    assert "<script" not in html


def test_package_files_exist() -> None:
    for name in STATIC_FILES:
        assert (static_dir() / name).is_file(), name
    assert (templates_dir() / "frame.html").is_file()
    assert (templates_dir() / "frame_error.html").is_file()
