"""The server's JSON reader: orjson's speed, the standard library's exact integers."""
from __future__ import annotations

import pytest

from paygate_server import jsoncodec


@pytest.mark.parametrize("number", [2**63 - 1, 2**64, -(2**63) - 1, 10**30, 10**300])
def test_an_integer_of_any_size_is_read_as_that_integer(number: int) -> None:
    # orjson alone reads the last four as floats (an amount would silently become one)
    value = jsoncodec.loads(b'{"amount": {"value": %d, "currency": "EUR"}, "rate": 1.5}' % number)
    assert value == {"amount": {"value": number, "currency": "EUR"}, "rate": 1.5}
    assert type(value["amount"]["value"]) is int
    assert jsoncodec.loads(f"[{number}]") == [number]


@pytest.mark.parametrize("body", [b"[NaN]", b"[1e400]", b"[" + b"9" * 400 + b"]", b"[1.5" + b"]" * 2,
                                  b"[" * 1000 + b"1.5" + b"]" * 1000])
def test_what_it_cannot_read_exactly_is_refused_as_not_json(body: bytes) -> None:
    with pytest.raises(jsoncodec.JSONDecodeError):
        jsoncodec.loads(body)
