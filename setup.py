"""Build the compiled twins of conduit's hot modules.

CONDUIT_EXTENSIONS (read here at build time and by conduit/_ext.py at import time):
  0      never build the extensions (pure Python install)
  1      a failed build is an error
  unset  try to build; on failure, warn and install the pure-Python package
"""
import os

from setuptools import Extension, setup

MODE = os.environ.get("CONDUIT_EXTENSIONS", "").strip()
HOT_MODULES = [
    "conduit.http._sse_c",
    "conduit.http._parser_c",
    "conduit.server._pump_c",
    "conduit.net._loop_c",
    "conduit.server._hub_c",
]


def extensions():
    if MODE == "0":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if MODE == "1":
            raise
        print("conduit: Cython not available, installing the pure-Python package")
        return []
    built = []
    for name in HOT_MODULES:
        ext = Extension(
            name,
            [name.replace(".", "/") + ".pyx"],
            extra_compile_args=["-O3"],
            # NOTE: optional=True turns a C compiler failure into a warning (the unset
            # mode); CONDUIT_EXTENSIONS=1 makes it fatal.
            optional=(MODE != "1"),
        )
        try:
            built += cythonize(
                [ext],
                language_level=3,
                compiler_directives={
                    "boundscheck": False,
                    "wraparound": False,
                    "cdivision": True,
                    "embedsignature": True,
                },
                annotate=bool(os.environ.get("CONDUIT_ANNOTATE")),
            )
        except Exception as exc:  # a Cython compile error
            if MODE == "1":
                raise
            print(f"conduit: cannot compile {name} ({exc}); the pure-Python twin will be used")
    return built


setup(ext_modules=extensions())
