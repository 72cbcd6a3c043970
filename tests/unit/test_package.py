"""The package as a user meets it: the CONDUIT_EXTENSIONS switch, --version, layering."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

import conduit
from conduit import _ext

ROOT = pathlib.Path(conduit.__file__).resolve().parent


def run_version(mode):
    env = dict(os.environ)
    if mode is None:
        env.pop("CONDUIT_EXTENSIONS", None)
    else:
        env["CONDUIT_EXTENSIONS"] = mode
    out = subprocess.run(
        [sys.executable, "-m", "conduit", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_version_pure_when_switched_off():
    assert run_version("0") == f"conduit {conduit.__version__} (compiled extensions: off)"


def compiled_built():
    return all(
        "compiled" in _ext.twins(package, name)
        for package, name in (("conduit.http", "sse"), ("conduit.http", "parser"),
                              ("conduit.net", "loop"), ("conduit.server", "pump"),
                              ("conduit.server", "hub"))
    )


@pytest.mark.skipif(_ext.MODE == "0", reason="extensions switched off for this run")
def test_version_compiled_when_built():
    if not compiled_built():
        pytest.skip("compiled twins not built here")
    assert run_version("1") == f"conduit {conduit.__version__} (compiled extensions: on)"
    assert run_version(None) == f"conduit {conduit.__version__} (compiled extensions: on)"


def test_required_but_missing_extension_is_an_error(tmp_path):
    # A copy of the package without any compiled file: CONDUIT_EXTENSIONS=1 must refuse it,
    # unset must fall back to pure Python.
    import shutil

    copy = tmp_path / "conduit"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path), CONDUIT_EXTENSIONS="1")
    code = "import conduit.http"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode != 0
    assert "CONDUIT_EXTENSIONS=1" in out.stderr
    env.pop("CONDUIT_EXTENSIONS")
    out = subprocess.run(
        [sys.executable, "-m", "conduit", "--version"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("(compiled extensions: off)")


def test_active_twin_matches_switch():
    from conduit.http import parser, sse
    from conduit.net import loop
    from conduit.server import hub, pump

    names = [module._impl.__name__ for module in (sse, parser, loop, pump, hub)]
    assert len(_ext.status()) == 5
    if _ext.MODE == "0":
        assert all(name.endswith("_py") for name in names), names
    elif _ext.MODE == "1":
        assert all(name.endswith("_c") for name in names), names


def imports_of(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


LAYER_RULES = {
    # package: packages it must never import (DESIGN.md section 1)
    "net": ("conduit.http", "conduit.server", "conduit.app"),
    "http": ("conduit.net", "conduit.server", "conduit.app"),
    "server": ("conduit.app",),
}


@pytest.mark.parametrize("layer", sorted(LAYER_RULES))
def test_layers_import_one_way(layer):
    folder = ROOT / layer
    if not folder.exists():
        pytest.skip(f"conduit/{layer} does not exist yet")
    sources = list(folder.rglob("*.py")) + list(folder.rglob("*.pyx"))
    assert sources
    for source in sources:
        for name in imports_of(source) if source.suffix == ".py" else []:
            assert not name.startswith(LAYER_RULES[layer]), f"{source} imports {name}"
        if source.suffix == ".pyx":
            text = source.read_text()
            for banned in LAYER_RULES[layer]:
                assert f"from {banned}" not in text and f"import {banned}" not in text, source


def test_app_touches_no_file_descriptor():
    """DESIGN.md section 1: the app layer never touches epoll or file descriptors (the local
    broker's sockets live in conduit.server; the Redis broker talks through redis-py)."""
    banned = ("select", "selectors", "socket", "fcntl")
    for source in (ROOT / "app").rglob("*.py"):
        for name in imports_of(source):
            assert name.split(".")[0] not in banned and not name.startswith("conduit.net"), \
                f"{source} imports {name}"


def test_public_api():
    assert set(conduit.__all__) >= {"SSEEvent", "SSEStream"}
    for name in conduit.__all__:
        assert hasattr(conduit, name)
