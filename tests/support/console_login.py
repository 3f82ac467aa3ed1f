"""The console's login form as a browser sends it: its page first (which sets the login
cookie and carries the form's CSRF token), then the POST with that token."""
from __future__ import annotations

import re

__all__ = ["login_token"]

_TOKEN = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def login_token(page: str) -> str:
    """The CSRF token of the login form in ``page`` (the HTML of ``GET /login``)."""
    found = _TOKEN.search(page)
    assert found is not None, page[:1000]
    return found.group(1)
