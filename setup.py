"""Build the compiled parts of fastfeed; everything else is in pyproject.toml.

Each extension is one entry of EXTENSIONS. With Cython installed the .pyx is compiled; without it
(an sdist on a machine with only a C compiler) the C file Cython generated, which the sdist
ships beside the .pyx, is compiled instead.

Set FASTFEED_DEBUG=1 for an annotated, line-traced build with assertions kept
(benchmarks refuse to run on it; needs Cython).
"""

import os
from pathlib import Path

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # building an sdist's shipped C
    cythonize = None

# module name -> Cython source
# The C headers the extensions include (the journal's CRC32C, the venues' scanners), found from
# the generated C too, not only by Cython from the .pxd that names them.
INCLUDE_DIRS = ["fastfeed/journal", "fastfeed/venues"]
EXTENSIONS = {
    "fastfeed.journal._wal": "fastfeed/journal/_wal.pyx",
    "fastfeed.recorder._sink": "fastfeed/recorder/_sink.pyx",
}

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


def extension(name: str, pyx: str) -> Extension:
    """The extension ``name`` from its .pyx, or from the generated C when Cython is absent.

    (Without either, setuptools stops at build time naming the missing .c; setup.py itself must
    still load, since the build backend runs it to ask what to install before Cython is there.)
    """
    source = pyx if cythonize is not None else str(Path(pyx).with_suffix(".c"))
    return Extension(
        name,
        [source],
        include_dirs=INCLUDE_DIRS,
        # Cython only tracks the headers a .pyx names; these include others (scan_json.h).
        depends=sorted(str(h) for d in INCLUDE_DIRS for h in Path(d).glob("*.h")),
        extra_compile_args=compile_args,
        define_macros=macros,
    )


extensions = [extension(name, pyx) for name, pyx in EXTENSIONS.items()]
if cythonize is not None:
    extensions = cythonize(extensions, compiler_directives=directives, annotate=DEBUG)
elif DEBUG:
    raise SystemExit("setup.py: FASTFEED_DEBUG=1 needs Cython (pip install 'cython>=3.0')")

setup(ext_modules=extensions)
