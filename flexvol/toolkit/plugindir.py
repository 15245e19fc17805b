"""Placing the driver where the kubelet finds it: <plugin dir>/flexvol~loop/loop.

The one implementation behind both install.sh and `flexvol install` / `flexvol uninstall`.
Toolkit only: the driver never imports it.

    python -m flexvol.toolkit.plugindir place --plugin-dir DIR --data-root DIR [--attach]
    python -m flexvol.toolkit.plugindir remove --plugin-dir DIR
"""

from __future__ import annotations

import argparse
import compileall
import os
import sys

from flexvol.core.errors import FlexvolError
from flexvol.toolkit.callrun import call_driver, installed_driver

# The kubelet runs the driver with its own environment: name the interpreter by absolute path.
DRIVER_PYTHON = "/usr/bin/python3"


def package_parent() -> str:
    """The directory that holds this flexvol package (a venv's site-packages or a checkout)."""
    import flexvol

    return os.path.dirname(os.path.dirname(os.path.abspath(flexvol.__file__)))


def driver_script(data_root: str, attach: bool, *, python: str = DRIVER_PYTHON,
                  site: str | None = None) -> str:
    return (
        f"#!{python} -ISB\n"
        "# flexvol/loop FlexVolume driver, placed by flexvol's installer.\n"
        "# -I -S -B: ignore the caller's environment and site, never write bytecode here.\n"
        "import sys\n"
        f"sys.path.insert(0, {site or package_parent()!r})\n"
        "from flexvol.flex.verbs import main_and_exit\n"
        f"main_and_exit(sys.argv[1:], data_root={data_root!r}, attach={attach!r})\n"
    )


def place(plugin_dir: str, data_root: str, attach: bool = False, *, python: str = DRIVER_PYTHON,
          site: str | None = None) -> tuple[str, bool]:
    """Write the driver atomically and check its init; return its path and whether it changed.

    Written to a dot-file in the driver dir, then renamed: the kubelet re-probes on every change
    there and must never run init on a half-written driver (docs/flexvolume.md sections 1, 8.4).
    """
    for path in (plugin_dir, data_root):
        if not os.path.isabs(path):
            raise FlexvolError(f"{path} is not an absolute path")
    site = site or package_parent()
    # precompiled here, since the driver runs with -B and never writes bytecode itself
    compileall.compile_dir(os.path.join(site, "flexvol"), quiet=1)
    driver = installed_driver(plugin_dir)
    os.makedirs(data_root, 0o700, exist_ok=True)
    os.makedirs(os.path.dirname(driver), 0o755, exist_ok=True)
    script = driver_script(data_root, attach, python=python, site=site).encode()
    try:
        with open(driver, "rb") as handle:
            changed = handle.read() != script
    except FileNotFoundError:
        changed = True
    if changed:
        temporary = os.path.join(os.path.dirname(driver), f".loop.{os.getpid()}")
        try:
            with open(temporary, "wb") as handle:
                handle.write(script)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o755)
            os.rename(temporary, driver)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    result = call_driver(driver, ["init"])
    if result.reply.get("status") != "Success":
        raise FlexvolError(f"the installed driver's init failed: {result.output.strip() or result.problem}",
                           f"run {driver} init by hand")
    return driver, changed


def remove(plugin_dir: str) -> list[str]:
    """Remove the driver and its dir; never the data root."""
    driver = installed_driver(plugin_dir)
    removed = []
    try:
        os.unlink(driver)
        removed.append(driver)
    except FileNotFoundError:
        pass
    try:
        os.rmdir(os.path.dirname(driver))
        removed.append(os.path.dirname(driver))
    except OSError:
        pass
    return removed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m flexvol.toolkit.plugindir")
    parser.add_argument("action", choices=("place", "remove"))
    parser.add_argument("--plugin-dir", required=True)
    parser.add_argument("--data-root", default="/var/lib/flexvol")
    parser.add_argument("--attach", action="store_true")
    parser.add_argument("--python", default=DRIVER_PYTHON)
    parser.add_argument("--site", default=None)
    options = parser.parse_args(argv)
    try:
        if options.action == "place":
            place(options.plugin_dir, options.data_root, options.attach, python=options.python,
                  site=options.site)
        else:
            remove(options.plugin_dir)
    except FlexvolError as error:
        print(f"install: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
