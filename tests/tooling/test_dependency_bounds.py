"""What the server leans on below the documented surface (uvicorn's httptools protocol and
httpcore's network backend are subclassed, driver-level calls on SQLAlchemy/aiosqlite/asyncpg,
Starlette) carries an upper bound that admits the installed release and stops at the next major
(next minor before 1.0)."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

# distribution -> the extra that declares it
LEANED_ON = {
    "uvicorn": "server",
    "httptools": "server",
    "httpcore": "server",
    "starlette": "server",
    "sqlalchemy": "server",
    "aiosqlite": "server",
    "asyncpg": "postgres",
}


def _requirement(name: str, extra: str) -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(line) for line in project["optional-dependencies"][extra]]
    [requirement] = [r for r in found if r.name.lower() == name]
    return requirement


@pytest.mark.parametrize("name", sorted(LEANED_ON))
def test_upper_bound_admits_the_installed_release_and_no_later_major(name: str) -> None:
    requirement = _requirement(name, LEANED_ON[name])
    uppers = [Version(s.version) for s in requirement.specifier if s.operator == "<"]
    assert uppers, f"{requirement} has no upper bound"
    installed = Version(version(name))
    assert installed in requirement.specifier, f"{name} {installed} is outside {requirement}"
    # A major (a minor while pre-1.0) later than the installed one is untested.
    ceiling = (Version(f"{installed.major + 1}") if installed.major >= 1
               else Version(f"0.{installed.minor + 1}"))
    assert min(uppers) <= ceiling, f"{requirement} admits releases past {ceiling}"
