"""SPEC §11: the sample shop uses only the SDK (and checkout.js in the browser). Its
application — every module a request runs — loads the SDK and no module of the gateway's;
only the command that starts it (``storefront/__main__.py``) borrows the HTTP server's
header limits and log set-up, which are no part of the payment integration."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
import storefront.app
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_the_shops_application_imports_the_sdk_and_nothing_of_the_gateway() -> None:
    # The server's folder is on the path too: it is not imported because it is not used,
    # not because it cannot be found.
    path = os.pathsep.join(str(ROOT / p) for p in ("examples/storefront", "sdk", "server", "checkout"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60,
                          check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "paygate" in loaded and "storefront" in loaded
    assert not loaded & {"paygate_server", "paygate_checkout", "sqlalchemy"}, sorted(loaded)


def test_only_the_start_command_names_a_gateway_module() -> None:
    shop = ROOT / "examples" / "storefront" / "storefront"
    naming = sorted(p.name for p in shop.glob("*.py") if "paygate_server" in p.read_text()
                    or "paygate_checkout" in p.read_text())
    assert naming == ["__main__.py"]
