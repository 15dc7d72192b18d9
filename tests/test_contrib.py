"""The shipped systemd unit: valid for systemd, and it tells the zipapp where to unpack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "contrib" / "fastfeed.service"


def test_unit_passes_systemd_analyze_verify_without_a_warning() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    done = subprocess.run(
        ["systemd-analyze", "verify", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_unit_gives_the_service_user_a_place_to_unpack_and_no_home() -> None:
    lines = set(UNIT.read_text().splitlines())
    for line in (
        "DynamicUser=yes",
        "ProtectHome=yes",
        "CacheDirectory=fastfeed",
        "Environment=SHIV_ROOT=%C/fastfeed",
        "RestartPreventExitStatus=2",
    ):
        assert line in lines
