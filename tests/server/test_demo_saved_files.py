"""`paygate demo` keeps its merchant and its console login in files of its data folder; one
that is not what the demo wrote (edited by hand, emptied, another program's) is started over,
never a traceback. Once: ``{}`` was a KeyError, ``[]`` a TypeError (each a traceback), and
text that is no JSON "paygate: Expecting value: line 1 column 1 (char 0)", naming no file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from paygate_server.config import Settings
from paygate_server.demo import ensure_demo_merchant, ensure_demo_operator
from tests.support.app import TEST_MASTER_KEY

UNUSABLE = ["{}", "[]", "not json", '{"merchantId": 5}', '{"merchantId": "mer_x", "apiKey": ["k"]}', "\udcff"]


@pytest.mark.parametrize("content", UNUSABLE, ids=["empty object", "list", "text", "number", "list value", "not utf8"])
def test_an_unusable_saved_file_is_started_over(content: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, master_key=TEST_MASTER_KEY)
    for name in ("demo-merchant.json", "demo-operator.json"):
        (tmp_path / name).write_bytes(content.encode("utf-8", "surrogateescape"))
    creds = ensure_demo_merchant(settings, ["http://127.0.0.1:8082"])
    assert creds["merchantId"].startswith("mer_") and creds["apiKey"].startswith("pk_test_")
    assert json.loads((tmp_path / "demo-merchant.json").read_text()) == creds
    login = ensure_demo_operator(settings)
    assert login["email"] and login["password"]
    # And what it wrote is used the next time.
    assert ensure_demo_merchant(settings, ["http://127.0.0.1:8082"]) == creds
    assert ensure_demo_operator(settings) == login
