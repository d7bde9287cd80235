"""The browser for the report's test: Debian's chromium and chromium-driver, installed when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def _install() -> str:
    """apt-get install chromium chromium-driver (as root); what went wrong, or '' on success."""
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "not root, cannot apt-get install chromium"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]):
        done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode:
            return f"{' '.join(step)} failed: {done.stderr.strip()[-300:]}"
    return ""


@pytest.fixture(scope="session")
def chromium_driver_paths() -> tuple[Path, Path]:
    """(chromium, chromedriver), installing Debian's packages first if they are missing."""
    if not (CHROMIUM.exists() and DRIVER.exists()):
        problem = _install()
        if problem or not (CHROMIUM.exists() and DRIVER.exists()):
            pytest.skip(f"headless chromium unavailable: {problem or 'installed, but binaries not found'}")
    return CHROMIUM, DRIVER
