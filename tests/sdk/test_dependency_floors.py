"""The SDK at the bottom of its declared ranges: a virtualenv with every dependency of
``pip install paygate`` at its floor (pyproject.toml's ``>=``) — and httpcore, which httpx
brings, at the oldest release httpx admits — runs tests/sdk (docs/sdk.md, "Supported
versions"). Lowering a floor to a release the SDK fails on fails here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.slow_set import is_slow_run

REPO = Path(__file__).resolve().parents[2]

# httpx requires httpcore at a range of its own (`httpcore==1.*` from 0.27 to 0.29), so a
# merchant may have the oldest of it: before 1.0.6 its async TLS handshake let ssl.SSLError
# out unwrapped (tests/sdk/test_tls.py).
OLDEST_OF_HTTPX_RANGE = """
import json, sys
from importlib.metadata import requires
from packaging.requirements import Requirement
[r] = [r for r in map(Requirement, requires("httpx")) if r.name == "httpcore" and not r.marker]
print(json.dumps([(s.operator, s.version) for s in r.specifier]))
"""
# What tests/sdk imports beside the SDK, at whatever release pip finds compatible with the
# floors (tests/support/hostile.py brings in Starlette; test_packaging reads with packaging).
TEST_TOOLS = (
    "pytest", "pytest-asyncio", "pytest-timeout", "respx", "jwcrypto", "standardwebhooks",
    "hypothesis", "packaging", "starlette",
)


def sdk_floors() -> dict[str, Version]:
    """Each dependency of ``pip install paygate`` and the floor its range declares."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    floors = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        lows = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert len(lows) == 1, f"{line}: the SDK's ranges start at one `>=` floor"
        floors[requirement.name.lower()] = lows[0]
    return floors


def lowest_admitted(specifier: list[tuple[str, str]]) -> str:
    """The oldest release a range admits: ``==1.*`` is 1.0.0, ``>=0.15,<0.17`` is 0.15."""
    for operator, version in specifier:
        if operator == "==" and version.endswith(".*"):
            return version[:-2] + ".0.0"
    [low] = [version for operator, version in specifier if operator == ">="]
    return low


def test_lowest_admitted() -> None:
    assert lowest_admitted([("==", "1.*")]) == "1.0.0"
    assert lowest_admitted([("<", "0.17.0"), (">=", "0.15.0")]) == "0.15.0"


def test_every_sdk_dependency_has_a_floor_that_admits_itself() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        floor = sdk_floors()[requirement.name.lower()]
        assert floor in requirement.specifier, line


def _index_reachable() -> bool:
    """Whether pip's index answers a TCP connection (PyPI unless PIP_INDEX_URL says)."""
    url = urlsplit(os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/"))
    if url.scheme == "file":
        return True
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=5):
            return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tests_sdk_pass_with_every_dependency_at_its_floor(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if not is_slow_run(request.config, {"slow"}):
        # Its length is a second run of tests/sdk, the same at any size: the default run
        # leaves it to the slow set (`pytest -m slow`).
        pytest.skip("installs the floor versions and runs tests/sdk again: in the slow set only")
    if not _index_reachable():
        pytest.skip("the package index (PyPI) is unreachable: cannot install the floor versions")
    # Nothing of the caller's PYTHONPATH reaches the venv's pythons (see test_packaging).
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    floors = sdk_floors()
    pins = [f"{name}=={floor}" for name, floor in floors.items()]
    # One resolution: the test tools must fit the floors, not move them. pip's cache is used
    # (a warm run installs in seconds); its timeout bounds each network read.
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--timeout", "30"]
    installed = subprocess.run([*pip, *pins, *TEST_TOOLS], capture_output=True, text=True,
                               timeout=600, env=clean, check=False)
    assert installed.returncode == 0, installed.stderr[-4000:]
    httpcore_range = subprocess.run([python, "-c", OLDEST_OF_HTTPX_RANGE], capture_output=True,
                                    text=True, check=True, timeout=60, env=clean).stdout
    oldest_httpcore = lowest_admitted([tuple(s) for s in json.loads(httpcore_range)])
    installed = subprocess.run([*pip, *pins, f"httpcore=={oldest_httpcore}"],
                               capture_output=True, text=True, timeout=600, env=clean,
                               check=False)
    assert installed.returncode == 0, installed.stderr[-4000:]
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"],
        capture_output=True, text=True, check=True, timeout=60, env=clean,
    ).stdout
    versions = {d["name"].lower(): Version(d["version"]) for d in json.loads(listed)}
    assert {name: versions.get(name) for name in floors} == floors
    assert versions.get("httpcore") == Version(oldest_httpcore)
    assert "paygate" not in versions and "sqlalchemy" not in versions

    # tests/sdk against the repository's sdk/paygate, without tests/conftest.py (it loads the
    # server); the slow tests (this one, and test_packaging's own virtualenv) are left out.
    result = subprocess.run(
        [python, "-m", "pytest", "tests/sdk", "--confcutdir", "tests/sdk", "-p",
         "no:cacheprovider", "-q", "-m", "not slow"],
        capture_output=True, text=True, cwd=REPO, timeout=600, check=False,
        env={**clean, "PYTHONPATH": os.pathsep.join([str(REPO / "sdk"), str(REPO)])},
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, (
        f"tests/sdk at {pins + [f'httpcore=={oldest_httpcore}']}: "
        + result.stdout[-6000:] + result.stderr[-2000:]
    )
    assert " passed" in summary and " failed" not in summary, summary
