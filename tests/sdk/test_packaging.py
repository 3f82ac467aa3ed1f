"""The SDK stands alone (SPEC §11): ``import paygate`` loads httpx and cryptography and
nothing of the server, and works in a clean virtualenv holding only those two."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import paygate

SDK_DIR = Path(paygate.__file__).resolve().parent

# Third-party modules httpx and cryptography bring, plus what httpx loads by itself when it
# happens to be installed (optional codecs, and its command line's click/rich/pygments,
# which httpx imports eagerly).
ALLOWED_ROOTS = {
    "paygate",
    "httpx",
    "httpcore",
    "h11",
    "h2",
    "hpack",
    "hyperframe",
    "anyio",
    "sniffio",
    "idna",
    "certifi",
    "cryptography",
    "_openssl",
    "_rust",
    "cffi",
    "_cffi_backend",
    "typing_extensions",
    "exceptiongroup",
    "brotli",
    "brotlicffi",
    "zstandard",
    "socksio",
    "click",
    "rich",
    "pygments",
    "markdown_it",
    "mdurl",
}
FORBIDDEN_ROOTS = {
    "starlette",
    "sqlalchemy",
    "orjson",
    "paygate_server",
    "paygate_checkout",
    "jinja2",
    "uvicorn",
    "alembic",
    "asyncpg",
    "aiosqlite",
    "jwcrypto",
    "standardwebhooks",
    "respx",
    "pytest",
}

PROBE = textwrap.dedent("""
    import json, sys
    before = set(sys.modules)
    import paygate
    paygate.Client, paygate.AsyncClient, paygate.webhooks.verify, paygate.encrypt_card
    new = set(sys.modules) - before
    roots = sorted({m.split(".")[0] for m in new} - set(sys.stdlib_module_names))
    print(json.dumps(roots))
""")


def test_pip_install_paygate_depends_on_httpx_and_cryptography_only() -> None:
    """SPEC §11: ``pip install paygate`` is the SDK and its two dependencies; the server's
    are an extra (``paygate[server]``)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((SDK_DIR.parent.parent / "pyproject.toml").read_text())["project"]
    assert sorted(Requirement(line).name for line in project["dependencies"]) == ["cryptography", "httpx"]
    server = {Requirement(line).name for line in project["optional-dependencies"]["server"]}
    assert {"starlette", "sqlalchemy"} <= server


def test_import_loads_only_httpx_and_cryptography() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    roots = set(json.loads(out))
    assert not roots & FORBIDDEN_ROOTS
    assert roots <= ALLOWED_ROOTS, roots - ALLOWED_ROOTS
    assert {"paygate", "httpx", "cryptography"} <= roots


SMOKE = textwrap.dedent("""
    import base64, json, sys
    import httpx
    from cryptography.hazmat.primitives.asymmetric import rsa
    import paygate
    from paygate import webhooks

    assert not {"starlette", "sqlalchemy", "orjson", "paygate_server"} & {
        m.split(".")[0] for m in sys.modules}
    assert paygate.compute_signature(
        "sk_test_3b003bab", "POST", "/api/v1/payment/intent", "2023-10-15T14:22:31Z",
        "a1b2c3d4-e5f6-7890-abcd-ef1234567890", b'{"amount":1999,"currency":"USD"}',
    ) == "sha256=5115bba367b9f2e7a39b00e7bceeee47266fad4e0bf21e348a11bf85c7afcd46"

    seen = []
    def handler(request):
        seen.append(request)
        return httpx.Response(201, json={"paymentIntentId": "pi_1", "status": "created"})
    with paygate.Client("pk_test_1", "sk_test_1", "http://gw.test",
                        transport=httpx.MockTransport(handler)) as client:
        assert client.payment_intents.create(amount=1, currency="USD", product_details={}).id
    assert seen[0].headers["x-signature"].startswith("sha256=")

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = paygate.encrypt_card(key.public_key(), kid="k", number="4242424242424242",
                                 exp_month=1, exp_year=2030, cvc="123")
    assert token.count(".") == 4
    secret = "whsec_" + base64.b64encode(b"x" * 32).decode()
    headers = webhooks.sign_headers('{"type":"t"}', secret, msg_id="evt_1")
    assert webhooks.verify('{"type":"t"}', headers, secret) == {"type": "t"}
    print("ok")
""")


@pytest.mark.slow
def test_sdk_alone_in_a_clean_virtualenv(tmp_path: Path) -> None:
    """A fresh venv (no system or project site-packages) with only httpx and cryptography
    installed from the package index, and a copy of sdk/paygate."""
    # Nothing of the caller's PYTHONPATH reaches the venv's pythons: a "." in it would show
    # pip the repository's own paygate.egg-info (written by the project's editable install).
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "httpx", "cryptography"],
        check=True,
        timeout=240,
        env=clean,
    )
    source = tmp_path / "src"
    shutil.copytree(
        SDK_DIR, source / "paygate", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    env = {**clean, "PYTHONPATH": str(source)}
    result = subprocess.run(
        [str(python), "-c", SMOKE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    # The venv really is clean: nothing of the server's stack is installed there.
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=clean,
    ).stdout
    names = {d["name"].lower() for d in json.loads(listed)}
    assert {"httpx", "cryptography"} <= names
    assert not names & {"starlette", "sqlalchemy", "orjson", "paygate", "jwcrypto"}
