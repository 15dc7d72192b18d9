"""Build the Cython extensions (journal core, frame sink); everything else is in pyproject.toml.

Set FASTFEED_DEBUG=1 for an annotated, line-traced build with assertions kept
(benchmarks refuse to run on it).
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTFEED_DEBUG") == "1"

compile_args = ["-O3", "-Wall", "-Wextra", "-Wno-unused-function", "-Wno-unused-parameter"]
macros: list[tuple[str, str | None]] = []
directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": DEBUG,
}
if DEBUG:
    compile_args = ["-O0", "-g", "-Wall", "-Wextra"]
    macros.append(("CYTHON_TRACE_NOGIL", "1"))
    macros.append(("FASTFEED_DEBUG_BUILD", "1"))
    directives["linetrace"] = True
else:
    macros.append(("NDEBUG", "1"))

extensions = [
    Extension(
        "fastfeed.journal._wal",
        ["fastfeed/journal/_wal.pyx"],
        extra_compile_args=compile_args,
        define_macros=macros,
    ),
    Extension(
        "fastfeed.recorder._sink",
        ["fastfeed/recorder/_sink.pyx"],
        extra_compile_args=compile_args,
        define_macros=macros,
    ),
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives, annotate=DEBUG))
