"""Install the driver into a node's plugin dir from the agent's container, atomically.

The kubelet runs the driver on the host, with the host's python3: so the package (standard
library only on the driver's path) is copied to a host directory first, into a directory named
after its content so a running driver never sees files change under it, and the driver file is
written to a dot-file and renamed into place (FLEXVOLUME.md 1: the kubelet re-probes on every
change and must never run `init` on a half-written file).
"""

from __future__ import annotations

import hashlib
import os
import shutil

import flexvol
from flexvol.config import DRIVER_NAME
from flexvol.errors import InvalidInput

HOST_PYTHON = "/usr/bin/python3"


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


def driver_script(site: str, data_root: str, attach: bool, python: str = HOST_PYTHON) -> str:
    for value in (site, data_root, python):
        if not os.path.isabs(value) or '"' in value or "\\" in value or "\n" in value:
            raise InvalidInput(f"{value!r} is not a plain absolute path")
    return (f"#!{python} -ISB\n"
            "# flexvol/loop FlexVolume driver, installed by the flexvol agent.\n"
            "import sys\n"
            f'sys.path.insert(0, "{site}")\n'
            "from flexvol.verbs import main\n"
            f'sys.exit(main(sys.argv[1:], data_root="{data_root}", attach={attach!r}))\n')


def install_driver(plugin_dir: str, lib_dir: str, data_root: str, *, attach: bool = False,
                   python: str = HOST_PYTHON, driver: str = DRIVER_NAME) -> tuple[str, bool]:
    """Install the driver at <plugin_dir>/<vendor>~<name>/<name>; returns (path, changed)."""
    vendor, name = driver.split("/")
    site = copy_package(lib_dir)
    driver_dir = os.path.join(plugin_dir, f"{vendor}~{name}")
    path = os.path.join(driver_dir, name)
    content = driver_script(site, data_root, attach, python).encode()
    try:
        with open(path, "rb") as handle:
            if handle.read() == content:
                return path, False
    except OSError:
        pass
    os.makedirs(driver_dir, mode=0o755, exist_ok=True)
    os.makedirs(data_root, mode=0o700, exist_ok=True)
    # A dot-file: the kubelet ignores names starting with "." when it probes.
    temporary = os.path.join(driver_dir, f".{name}.{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, 0o755)
    os.rename(temporary, path)
    return path, True
