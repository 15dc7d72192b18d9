"""setuptools' build backend, asking for Cython only where the C it generates is not shipped.

An sdist carries the generated C (MANIFEST.in), so building a wheel from it needs a C compiler
and no Cython; a git checkout has only the .pyx. This is setuptools' documented way to vary
build requirements: a backend in the source tree wrapping ``setuptools.build_meta``
("Dynamic build dependencies and other build_meta tweaks", setuptools docs).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  (the rest of the backend, unchanged)

CYTHON = "cython>=3.0"


def _cython_unless_sdist() -> list[str]:
    # PKG-INFO at the top is what makes a directory an unpacked sdist.
    return [] if Path("PKG-INFO").exists() else [CYTHON]


def get_requires_for_build_wheel(config_settings: dict[str, str] | None = None) -> list[str]:
    """setuptools' requirements, plus Cython when building from a git checkout."""
    return build_meta.get_requires_for_build_wheel(config_settings) + _cython_unless_sdist()


def get_requires_for_build_editable(config_settings: dict[str, str] | None = None) -> list[str]:
    """As for a wheel: an editable install compiles the extensions too."""
    return build_meta.get_requires_for_build_editable(config_settings) + _cython_unless_sdist()


def get_requires_for_build_sdist(config_settings: dict[str, str] | None = None) -> list[str]:
    """Cython always: the sdist ships the C it generates."""
    return [*build_meta.get_requires_for_build_sdist(config_settings), CYTHON]
