"""Build the optional Cython codec.

The extension is optional: if Cython or a C compiler is missing, or the build
fails, or FASTWS_NO_EXTENSIONS=1 is set, fastws installs with its pure-Python
codec, which has the same interface and behaviour.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Turn any failure to build the extension into a warning.

    setuptools compiles the .pyx through Cython itself when Cython is installed
    (it is in the build requirements)."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any failure means "no extension"
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)

    @staticmethod
    def _warn(exc):
        sys.stderr.write(f"WARNING: fastws C extension not built ({exc}); using the pure-Python codec.\n")


def extensions():
    if os.environ.get("FASTWS_NO_EXTENSIONS"):
        return []
    optimise = ["/O2"] if sys.platform == "win32" else ["-O3"]
    codec = Extension("fastws._codec", ["src/fastws/_codec.pyx"], include_dirs=["src/fastws"], extra_compile_args=optimise)
    # Python sources also compiled as they are, each typed by the .pxd beside it
    # (NAME_c.pxd for NAME_py.py); fastws.codec.backend_module picks the build or the source.
    compiled_twins = [
        Extension(f"fastws.{name}_c", [f"src/fastws/{name.replace('.', '/')}_py.py"], extra_compile_args=optimise)
        # the sans-I/O Connection; the asyncio per-message path; the callbacks of `fastws bench`
        for name in ("_connection", "asyncio._core", "loadgen._client")
    ]
    try:
        from Cython.Build import cythonize
    except ImportError:  # the codec alone (setuptools compiles a .pyx itself when Cython is there)
        return [codec]
    # Annotations stay hints, as in the source: Cython must not turn them into checks.
    # The generated C goes to build/, not beside the sources.
    directives = {"annotation_typing": False, "language_level": 3}
    return cythonize([codec, *compiled_twins], compiler_directives=directives, build_dir="build/cython")


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
