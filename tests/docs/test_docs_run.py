"""Every command and code block in the README and docs/ runs as written against ``paygate
demo`` (issue: docs that failed as written). One demo serves every document; each
document's blocks run in order, Python blocks in one namespace (a later block may use
``client`` or ``intent`` from an earlier one, as a reader's session would), shell blocks in
bash from a folder that looks like the repository root (``.venv``, ``paygate-data``).

The reader's placeholders become the demo's values: the demo's URLs for the documented
ports 8080/8081/8082, ``mer_…`` its merchant, ``pk_test_…``/``sk_test_…`` its key pair,
``pk_test_…old`` a second key pair of it (for a rotation to revoke), ``pi_…`` a paid
intent made for the purpose. A benchmark's measured window (``--duration 20``) runs for
2 s: the same command, flags and output; 20 s of load against the shared demo only left
thousands of payments for every later document's commands to wade through (the bench's
figures are tests/server/bench's and docs/performance.md's business).
"""
from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docs.blocks import REPO, RUNNABLE, Block, blocks_of, documents
from tests.examples.demo_process import Demo, running_demo

BLOCK_TIMEOUT_S = 90
BENCH_DURATION_S = 2  # a documented bench's --duration, shortened (see above)
DOCS = [d for d in documents() if any(b.lang in RUNNABLE for b in blocks_of(d))]


class Session:
    """The demo plus the values a reader would paste into the docs' placeholders."""

    def __init__(self, demo: Demo, workdir: Path) -> None:
        self.demo = demo
        self.workdir = workdir
        creds = demo.credentials()
        with demo.sdk() as client:
            intent = client.payment_intents.create(amount=2500, currency="USD",
                                                   product_details={"sku": "docs"})
            client.payment_intents.process(
                intent.id, encrypted_card=client.encrypt_card(
                    number="4242424242424242", exp_month=12, exp_year=2034, cvc="123"))
            client.payment_intents.wait_for_status(intent.id, timeout=30)
        # A second key pair, the "old" one a rotation example revokes (not the demo's own).
        old = subprocess.run([sys.executable, "-m", "paygate_server", "keys", "create", "--merchant",
                              creds["merchantId"], "--json"], cwd=workdir, capture_output=True, text=True,
                             check=True, timeout=60, env={k: v for k, v in os.environ.items()
                                                          if k not in ("PAYGATE_DATA_DIR", "PAYGATE_DATABASE_URL")})
        self.values = {
            "pk_test_…old": json.loads(old.stdout)["apiKey"],
            "http://127.0.0.1:8080": demo.gateway,
            "http://127.0.0.1:8081": demo.simulator,
            "http://127.0.0.1:8082": demo.shop,
            "http://localhost:8080": demo.gateway,
            "mer_…": creds["merchantId"],
            "pk_test_…": creds["apiKey"],
            "sk_test_…": creds["signingSecret"],
            "pi_…": intent.id,
            "--duration 20": f"--duration {BENCH_DURATION_S}",
        }
        self.env = {**os.environ, "PAYGATE_BASE_URL": demo.gateway, "PAYGATE_API_KEY": creds["apiKey"],
                    "PAYGATE_SIGNING_SECRET": creds["signingSecret"],
                    # The CLI's default processor is the documented port 8081, the demo's.
                    "PAYGATE_PROCESSOR_URL": demo.simulator,
                    "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        for name in ("PAYGATE_DATA_DIR", "PAYGATE_DATABASE_URL"):
            self.env.pop(name, None)

    def fill(self, code: str) -> str:
        for placeholder, value in self.values.items():
            code = code.replace(placeholder, value)
        return code


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    root = tmp_path_factory.mktemp("docs")
    workdir = root / "repo"
    workdir.mkdir()
    data_dir = workdir / "paygate-data"
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    with running_demo(data_dir) as demo:
        yield Session(demo, workdir)


def _run_python(block: Block, code: str, namespace: dict[str, Any], loop: asyncio.AbstractEventLoop,
                env: dict[str, str]) -> None:
    compiled = compile(code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("PAYGATE_")})
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = eval(compiled, namespace)  # noqa: S307 - the docs' own code, on purpose
            if asyncio.iscoroutine(result):
                loop.run_until_complete(asyncio.wait_for(result, BLOCK_TIMEOUT_S))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run_sh(block: Block, code: str, session: Session) -> None:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=session.workdir,
                            env=session.env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
                            check=False)
    assert result.returncode == 0, (
        f"{block.where} failed ({result.returncode}):\n{code}\n--- stdout\n{result.stdout}"
        f"\n--- stderr\n{result.stderr}")


@pytest.mark.parametrize("document", DOCS, ids=lambda d: str(d.relative_to(REPO)))
def test_every_block_runs_as_written(document: Path, session: Session) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    loop = asyncio.new_event_loop()
    failures: list[str] = []
    try:
        for block in blocks_of(document):
            if block.lang not in RUNNABLE or block.skip is not None:
                continue
            code = session.fill(block.code)
            try:
                if block.lang == "sh":
                    _run_sh(block, code, session)
                else:
                    _run_python(block, code, namespace, loop, session.env)
            except AssertionError as exc:
                failures.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - say which block, with the cause
                failures.append(f"{block.where} failed: {exc!r}\n{code}")
    finally:
        loop.close()
    assert not failures, "\n\n".join(failures)


def test_skips_say_why() -> None:
    """A block the test does not run carries a reason a reader can check."""
    for document in documents():
        for block in blocks_of(document):
            if block.skip is not None:
                assert len(block.skip) >= 10, f"{block.where}: say why it is not run"
