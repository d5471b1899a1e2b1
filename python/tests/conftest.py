"""Shared fixtures: the repository, the `netc` binary the Python results are compared with, and the
badcrossbar peer (missing: a failure under CI=true, a skip otherwise)."""

import json
import os
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _ci() -> bool:
    return os.environ.get("CI") == "true"


def _missing(what: str):
    if _ci():
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"{what} not found: skipping")


@pytest.fixture(scope="session")
def repo() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def netc_bin() -> str:
    """The CLI binary: $NETC_BIN, else target/{release,debug}/netc of this repository."""
    env = os.environ.get("NETC_BIN")
    candidates = [env] if env else []
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    candidates += [str(target / "release" / "netc"), str(target / "debug" / "netc"), shutil.which("netc")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    _missing("the netc binary (build it with cargo build, or set NETC_BIN)")


@pytest.fixture(scope="session")
def cli(netc_bin):
    """Run the CLI; returns the CompletedProcess (text), failing on a nonzero exit unless ok=False."""

    def run(*args, ok=True, cwd=None):
        p = subprocess.run([netc_bin, *map(str, args)], capture_output=True, text=True, cwd=cwd)
        if ok and p.returncode != 0:
            raise AssertionError(f"netc {' '.join(map(str, args))} failed:\n{p.stderr}")
        return p

    return run


@pytest.fixture(scope="session")
def cli_json(cli):
    def run(*args):
        return json.loads(cli(*args).stdout)

    return run


@pytest.fixture(scope="session")
def badcrossbar():
    try:
        import badcrossbar as bc
    except ImportError:
        _missing("badcrossbar (pip install badcrossbar)")
    return bc
