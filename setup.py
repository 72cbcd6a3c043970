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
    exts = [
        Extension(
            name,
            [name.replace(".", "/") + ".pyx"],
            extra_compile_args=["-O3"],
            # NOTE: optional=True turns a compiler failure into a warning (the unset mode);
            # CONDUIT_EXTENSIONS=1 makes it fatal.
            optional=(MODE != "1"),
        )
        for name in HOT_MODULES
    ]
    return cythonize(
        exts,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
        annotate=bool(os.environ.get("CONDUIT_ANNOTATE")),
    )


setup(ext_modules=extensions())
