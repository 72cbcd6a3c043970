"""Choose between the compiled (Cython) and pure-Python twins of the hot modules.

This is the only reader of ``CONDUIT_EXTENSIONS``:

1. ``0``: never import the compiled modules; the pure-Python twins are used.
2. ``1``: a compiled module that fails to import is an error (CI sets this, so a broken
   build can never hide behind the fallback).
3. unset (or anything else): try the compiled module, fall back to the pure one.

Every hot module exists twice, ``_<name>_c`` (compiled) and ``_<name>_py`` (pure), with the
same public names and behaviour; tests run the same cases on both.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

MODE = os.environ.get("CONDUIT_EXTENSIONS", "").strip()

# The hot modules, by their pure twin's name; ``load`` records which twin it used.
_loaded: dict[str, bool] = {}


class ExtensionsUnavailable(ImportError):
    """``CONDUIT_EXTENSIONS=1`` was set but a compiled module could not be imported."""


def load(package: str, name: str) -> ModuleType:
    """Return ``package._<name>_c`` or ``package._<name>_py`` according to MODE."""
    if MODE != "0":
        try:
            module = importlib.import_module(f"{package}._{name}_c")
        except ImportError as exc:
            if MODE == "1":
                raise ExtensionsUnavailable(
                    f"CONDUIT_EXTENSIONS=1 but {package}._{name}_c cannot be imported: {exc}. "
                    "Build it with `pip install -e .` (needs a C compiler and Cython 3)."
                ) from exc
        else:
            _loaded[f"{package}.{name}"] = True
            return module
    _loaded[f"{package}.{name}"] = False
    return importlib.import_module(f"{package}._{name}_py")


def twins(package: str, name: str) -> dict[str, ModuleType]:
    """Both implementations that can be imported here, keyed "pure" and "compiled".

    For tests: with ``CONDUIT_EXTENSIONS=1`` a missing compiled twin raises instead of
    being skipped silently.
    """
    found = {"pure": importlib.import_module(f"{package}._{name}_py")}
    if MODE == "0":
        return found
    try:
        found["compiled"] = importlib.import_module(f"{package}._{name}_c")
    except ImportError as exc:
        if MODE == "1":
            raise ExtensionsUnavailable(f"{package}._{name}_c cannot be imported: {exc}") from exc
    return found


def _load_all() -> None:
    # Import every dispatcher so the answer covers all hot modules, not just those used.
    import conduit.http  # noqa: F401
    import conduit.net.loop  # noqa: F401
    import conduit.server.hub  # noqa: F401
    import conduit.server.pump  # noqa: F401


def compiled_active() -> bool:
    """True when every hot module is the compiled twin."""
    _load_all()
    return bool(_loaded) and all(_loaded.values())


def status() -> dict[str, bool]:
    """Which twin each hot module uses: {"conduit.http.sse": True, ...} (True = compiled)."""
    _load_all()
    return dict(_loaded)
