"""Install the driver into a node's plugin dir from the agent's container, atomically.

The kubelet runs the driver on the host, with the host's python3: so the package (standard
library only on the driver's path) is copied to a host directory first, into a directory named
after its content so a running driver never sees files change under it; then
flexvol.toolkit.plugindir places the driver file as install.sh does (a dot-file renamed into
place, docs/flexvolume.md section 1).
"""

from __future__ import annotations

import hashlib
import os
import shutil

import flexvol
from flexvol.core.errors import FlexvolError
from flexvol.toolkit import plugindir


def package_files(source: str) -> list[str]:
    """The package's .py files, relative and sorted."""
    found = []
    for directory, subdirs, files in os.walk(source):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in files:
            if name.endswith(".py"):
                found.append(os.path.relpath(os.path.join(directory, name), source))
    return sorted(found)


def package_digest(source: str, files: list[str]) -> str:
    digest = hashlib.sha256()
    for relative in files:
        digest.update(relative.encode() + b"\0")
        with open(os.path.join(source, relative), "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:12]


def copy_package(lib_dir: str) -> str:
    """Copy the flexvol package under `lib_dir` once per content; return the site dir."""
    source = os.path.dirname(os.path.abspath(flexvol.__file__))
    files = package_files(source)
    site = os.path.join(lib_dir, f"flexvol-{flexvol.__version__}-{package_digest(source, files)}")
    if os.path.isdir(site):
        return site
    os.makedirs(lib_dir, mode=0o755, exist_ok=True)
    temporary = os.path.join(lib_dir, f".{os.path.basename(site)}.{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    for relative in files:
        target = os.path.join(temporary, "flexvol", relative)
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        shutil.copyfile(os.path.join(source, relative), target)
    os.rename(temporary, site)
    return site


def install_driver(plugin_dir: str, lib_dir: str, data_root: str, *, attach: bool = False,
                   python: str = plugindir.DRIVER_PYTHON) -> tuple[str, bool]:
    """Copy the package under `lib_dir`, then place the driver with the installer install.sh
    uses (atomic, init checked); returns (driver path, changed)."""
    if not os.path.isabs(lib_dir):
        raise FlexvolError(f"{lib_dir} is not an absolute path")
    return plugindir.place(plugin_dir, data_root, attach, python=python, site=copy_package(lib_dir))
