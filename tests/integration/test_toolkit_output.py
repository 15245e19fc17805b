"""The installed `flexvol` command piped, as scripts and `| cat` see it, on real volumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.driver import Driver, options

FLEXVOL = str(Path(sys.executable).parent / "flexvol")


def piped(driver: Driver, *args: str, columns: str = "80") -> str:
    """stdout of the installed command into a pipe, with a pinned COLUMNS as a shell may export."""
    env = {**os.environ, "COLUMNS": columns, "FLEXVOL_ROOT": str(driver.root),
           "FLEXVOL_KUBELET_ROOT": str(driver.base / "kubelet")}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run([FLEXVOL, *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ls_piped_keeps_every_volume_on_one_line(driver: Driver) -> None:
    """Defect 2: `flexvol ls | cat` split a mount path over several lines (rich wrapped at 80
    columns off a terminal) and squeezed the headers."""
    target = str(driver.base / "kubelet" / "pods" / "0e0c5b8a-4b4f-4c5e-9d7e-2f1a3b4c5d6e" / "volumes" /
                 "flexvol~loop" / "pvc-5f0f7c1e-3b8c-4f2a-9a55-0d6c1f4b2e77")
    driver.ok("mount", target, options("v1", **{"kubernetes.io/pod.name": "web-0",
                                                "kubernetes.io/pod.namespace": "shop"}))
    try:
        lines = piped(driver, "ls").splitlines()
        assert lines[0].split() == ["VOLUME", "SIZE", "ALLOCATED", "USED", "FS", "LOOP", "MOUNTS", "PV",
                                    "STATE"]
        assert len(lines) == 2, lines
        assert lines[1].startswith("v1 ") and f"{target} [shop/web-0]" in lines[1]
        assert lines[1].endswith("mounted") and "64Mi" in lines[1].split()
        assert piped(driver, "ls", "-o", "name") == "v1\n"
        headless = piped(driver, "ls", "--no-headers", columns="20").splitlines()
        assert [line.split() for line in headless] == [lines[1].split()]
        wide = piped(driver, "ls", "-o", "wide").splitlines()
        assert str(driver.backing_file("v1")) in wide[1]
        listed = json.loads(piped(driver, "ls", "-o", "json"))
        assert [mount["path"] for mount in listed[0]["mounts"]] == [target]
    finally:
        driver.ok("unmount", target)


def test_create_and_ls_show_one_figure(driver: Driver) -> None:
    """Defect 5: `create -s 1G` echoed 976564Ki while `ls` said 954Mi."""
    echoed = piped(driver, "create", "v1", "-s", "1G", "--thin")
    assert "created v1: 953.7Mi ext4 thin" in echoed and "Ki" not in echoed, echoed
    assert driver.backing_file("v1").stat().st_size == 1000001536
    row = piped(driver, "ls", "--no-headers").split()
    assert row[:2] == ["v1", "953.7Mi"], row
