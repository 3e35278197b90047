"""The Debian side: whether a soundtrack's package is installed, its download size, and installing the
missing ones with apt-get (only when asked: --install)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from . import BuildError
from .catalog import Soundtrack


def package_installed(package: str) -> bool:
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    except FileNotFoundError:
        return False
    return result.returncode == 0 and "install ok installed" in result.stdout


def apt_line(packages: list[str]) -> str:
    return "apt-get install -y --no-install-recommends " + " ".join(packages)


def download_size(package: str) -> str:
    try:
        result = subprocess.run(["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True)
    except FileNotFoundError:
        return "?"
    match = re.search(r"^Size: (\d+)$", result.stdout, re.M)
    return f"{int(match.group(1)) / 1e6:.1f} MB" if match else "?"


def ensure_packages(soundtracks: list[Soundtrack], install: bool) -> None:
    """Every package installed (apt-get installs the missing ones when ``install``), with its folder there."""
    missing = sorted({s.package for s in soundtracks if not package_installed(s.package)})
    if missing and install:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        command = sudo + apt_line(missing).split()
        print("==", " ".join(command), flush=True)
        if subprocess.run(command, env=env).returncode != 0:
            subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env)
            subprocess.run(command, env=env)
        missing = sorted({s.package for s in soundtracks if not package_installed(s.package)})
    if missing:
        raise BuildError(
            f"missing Debian package(s): {', '.join(missing)}\n"
            f"install them with:  sudo {apt_line(missing)}\n"
            "(or run this builder with --install)"
        )
    for s in soundtracks:
        if not Path(s.root).exists():
            raise BuildError(f"{s.package} is installed but {s.root} is not there: another version of the package?")
