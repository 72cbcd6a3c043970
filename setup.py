"""Build the compiled twins of conduit's hot modules.

CONDUIT_EXTENSIONS (read here at build time and by conduit/_ext.py at import time):
  0      never build the extensions (pure Python install)
  1      a failed build is an error
  unset  try to build; on failure, warn and install the pure-Python package
"""
import os
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# PERF: a new extension object is zeroed with memset (Cython's free lists and
# PyType_GenericAlloc both do it). For objects of a hundred-odd bytes GCC emits `rep stosq`,
# whose start-up cost dominates; an unrolled loop of stores up to 256 bytes (libc above)
# takes SSEEvent(i, event=..., id=i) from 67 to 57 ns (bench/micro_sse.py, last row).
# Only memset is affected (memcpy stays libc's). Passed only to a compiler that accepts it
# (GCC does, clang does not).
OPTIONAL_FLAGS = ["-mmemset-strategy=unrolled_loop:256:noalign,libcall:-1:noalign"]


class BuildExt(build_ext):
    """build_ext that adds the OPTIONAL_FLAGS the compiler accepts."""

    def build_extensions(self):
        accepted = [flag for flag in OPTIONAL_FLAGS if self._accepts(flag)]
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + accepted
        super().build_extensions()

    def _accepts(self, flag):
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "probe.c")
            with open(source, "w") as f:
                f.write("int main(void) { return 0; }\n")
            try:
                self.compiler.compile([source], output_dir=tmp, extra_postargs=[flag])
            except Exception:
                return False
        return True

def has_openssl_headers():
    """True when OpenSSL's headers are where the C compiler looks (and it links)."""
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write("#include <openssl/ssl.h>\n"
                    "int main(void) { return SSL_CTX_new(TLS_server_method()) == 0; }\n")
        try:
            objects = compiler.compile([source], output_dir=tmp)
            compiler.link_executable(objects, os.path.join(tmp, "probe"),
                                     libraries=["ssl", "crypto"])
        except Exception:
            print("conduit: OpenSSL headers not found (Debian: libssl-dev): the compiled "
                  "loop is built without TLS")
            return False
    return True


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
    openssl = has_openssl_headers()
    for name in HOT_MODULES:
        tls = name == "conduit.net._loop_c" and openssl
        ext = Extension(
            name,
            [name.replace(".", "/") + ".pyx"],
            extra_compile_args=["-O3"],
            # The compiled loop speaks TLS through OpenSSL (conduit.net.tls) when its
            # headers are here (Debian: libssl-dev); without them it is built without TLS.
            define_macros=[("CONDUIT_HAVE_OPENSSL", "1")] if tls else [],
            libraries=["ssl", "crypto"] if tls else [],
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


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
