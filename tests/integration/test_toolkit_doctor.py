"""flexvol doctor with a tool hidden from the driver's PATH and with a noexec plugin dir."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from flexvol.core.config import TOOL_PATH
from flexvol.toolkit.doctor import REQUIRED_TOOLS, find_tool
from tests.helpers.cli import flexvol
from tests.helpers.driver import DRIVER, Driver


def plugin_dir_with_driver(driver: Driver) -> Path:
    plugins = driver.base / "plugins"
    (plugins / "flexvol~loop").mkdir(parents=True)
    script = plugins / "flexvol~loop" / "loop"
    script.write_text(f'#!/bin/sh\nexec "{DRIVER}" "$@"\n')
    script.chmod(0o755)
    return plugins


def tool_dir_without(driver: Driver, hidden: str) -> str:
    tools = driver.base / "tools"
    tools.mkdir()
    for name in (*REQUIRED_TOOLS, "mkfs.xfs", "xfs_growfs", "mkfs.btrfs", "btrfs"):
        found = find_tool(name, TOOL_PATH)
        if found and name != hidden:
            (tools / name).symlink_to(found)
    return str(tools)


def doctor(driver: Driver, *args: str) -> tuple[int, dict[str, dict]]:
    result = flexvol("doctor", "--json", *args, root=str(driver.root),
                     kubelet_root=str(driver.base / "kubelet"))
    return result.exit_code, {check["name"]: check for check in json.loads(result.stdout)}


def test_ready_node_passes_and_runs_the_driver_init(driver: Driver) -> None:
    plugins = plugin_dir_with_driver(driver)
    code, checks = doctor(driver, "--plugin-dir", str(plugins))
    assert checks["driver init"]["status"] == "PASS", checks["driver init"]
    assert checks["plugin dir"]["status"] == "PASS"
    assert checks["tools"]["status"] == "PASS"
    assert code == (4 if any(c["status"] == "FAIL" for c in checks.values()) else 0)


def test_tool_hidden_from_path_fails_with_exit_4(driver: Driver) -> None:
    plugins = plugin_dir_with_driver(driver)
    code, checks = doctor(driver, "--plugin-dir", str(plugins), "--tool-path",
                          tool_dir_without(driver, "blkid"))
    assert code == 4
    assert checks["tools"]["status"] == "FAIL"
    assert "blkid" in checks["tools"]["detail"]
    assert checks["tools"]["fix"]


def test_missing_xfs_tools_only_warn(driver: Driver) -> None:
    plugins = plugin_dir_with_driver(driver)
    _, checks = doctor(driver, "--plugin-dir", str(plugins), "--tool-path",
                       tool_dir_without(driver, "mkfs.xfs"))
    assert checks["tools for xfs"]["status"] == "WARN"
    assert checks["tools"]["status"] == "PASS"


def test_noexec_plugin_dir_fails(driver: Driver) -> None:
    plugins = driver.base / "plugins"
    plugins.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,size=1m", "tmpfs", str(plugins)], check=True)
    try:
        code, checks = doctor(driver, "--plugin-dir", str(plugins))
        assert code == 4
        assert checks["plugin dir"]["status"] == "FAIL"
        assert "noexec" in checks["plugin dir"]["detail"]
    finally:
        subprocess.run(["umount", str(plugins)], check=True)


def test_missing_driver_fails(driver: Driver) -> None:
    plugins = driver.base / "empty-plugins"
    plugins.mkdir()
    code, checks = doctor(driver, "--plugin-dir", str(plugins))
    assert code == 4
    assert checks["driver init"]["status"] == "FAIL"
    assert os.fspath(plugins) in checks["driver init"]["fix"]
