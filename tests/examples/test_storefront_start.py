"""The shop's start-up refuses a setting it cannot use in one line naming it (README,
"Settings"), never a traceback: once, ``STOREFRONT_PORT=x``, a secret key that is not hex
or too short, a data folder that is a file, a gateway URL that is no URL, ``--port
99999999999`` and ``--fd 99999999999999999999`` each ended in one."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.examples.conftest import STOREFRONT_DIR

ROOT = STOREFRONT_DIR.parents[1]
KEYS = {"STOREFRONT_API_KEY": "pk_test_x", "STOREFRONT_SIGNING_SECRET": "sk_test_x", "STOREFRONT_ADMIN_PASSWORD": "pw"}


@pytest.mark.parametrize(("name", "value", "says"), [
    ("STOREFRONT_SECRET_KEY", "zz", "STOREFRONT_SECRET_KEY: the cookie key must be at least 16 bytes written in hex"),
    ("STOREFRONT_SECRET_KEY", "00", "STOREFRONT_SECRET_KEY: the cookie key must be at least 16 bytes written in hex"),
    ("STOREFRONT_GATEWAY_URL", "nan", "STOREFRONT_GATEWAY_URL: not an http(s)://host[:port] URL"),
    ("STOREFRONT_GATEWAY_PUBLIC_URL", "http://[::1", "STOREFRONT_GATEWAY_PUBLIC_URL: not an http(s)://host[:port] URL"),
    ("STOREFRONT_GATEWAY_URL", "http://gateway.example:99999", "STOREFRONT_GATEWAY_URL: not an http(s)://host[:port] URL"),
])
def test_a_setting_the_shop_cannot_use_is_named(name: str, value: str, says: str, tmp_path: Path) -> None:
    from storefront.config import StorefrontConfig

    with pytest.raises(SystemExit) as refused:
        StorefrontConfig.from_env({**KEYS, "STOREFRONT_DATA_DIR": str(tmp_path), name: value})
    assert str(refused.value.code).startswith(f"storefront: {says}"), refused.value.code


def test_a_data_folder_that_is_a_file_or_a_key_file_that_is_no_key_is_named(tmp_path: Path) -> None:
    from storefront.config import StorefrontConfig

    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(SystemExit, match=f"^storefront: STOREFRONT_DATA_DIR: {afile} is not a folder$"):
        StorefrontConfig.from_env({**KEYS, "STOREFRONT_DATA_DIR": str(afile)})
    (tmp_path / "secret.key").write_text("not hex\n")
    with pytest.raises(SystemExit, match=f"^storefront: {tmp_path / 'secret.key'}: the cookie key must be"):
        StorefrontConfig.from_env({**KEYS, "STOREFRONT_DATA_DIR": str(tmp_path)})
    # And a usable one still works: a new folder gets a new key.
    assert len(StorefrontConfig.from_env({**KEYS, "STOREFRONT_DATA_DIR": str(tmp_path / "new")}).secret_key) == 32


@pytest.mark.parametrize(("args", "env", "says"), [
    ([], {"STOREFRONT_PORT": "x"}, "storefront: STOREFRONT_PORT: must be a port number from 0 to 65535"),
    (["--port", "99999999999"], {}, "python -m storefront: error: argument --port: must be a port number"),
    (["--fd", "99999999999999999999"], {}, "python -m storefront: error: argument --fd: must be a whole number"),
], ids=["STOREFRONT_PORT", "--port", "--fd"])
def test_a_port_or_socket_number_out_of_range_is_one_line(args: list[str], env: dict[str, str], says: str,
                                                          tmp_path: Path) -> None:
    path = os.pathsep.join(str(ROOT / p) for p in ("examples/storefront", "sdk", "server", "checkout"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "STOREFRONT_"))}
    r = subprocess.run([sys.executable, "-m", "storefront", *args], capture_output=True, text=True, timeout=60,
                       env={**base, **KEYS, **env, "PYTHONPATH": path, "STOREFRONT_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 if args else r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.splitlines()[-1].startswith(says), r.stderr
