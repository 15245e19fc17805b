"""`flexvol sanity`: our driver passes in both modes; each broken driver fails its check.

The broken drivers under tests/broken_drivers each carry one defect (see their README).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexvol.cli.main import load_commands
from tests.helpers.driver import DRIVER, REPO, Driver

BROKEN = REPO / "tests" / "broken_drivers"
CLI_ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


@pytest.fixture
def work_dir(driver: Driver) -> Path:
    # The fixture's finalizer unmounts and detaches whatever a failing run left under it.
    return driver.base


def sanity(work_dir: Path, driver: Path, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(load_commands(), ["sanity", str(driver), "--json", "--tmp-dir", str(work_dir),
                                                  *args], env=CLI_ENV)
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    # The temporary node is gone: nothing of it is left mounted or attached.
    assert [path.name for path in work_dir.iterdir()] == ["mnt"]
    return result.exit_code, report


def statuses(report: dict) -> dict[str, str]:
    return {item["name"]: item["status"] for item in report["results"]}


def test_flexvol_passes_every_check_non_attachable(work_dir: Path) -> None:
    code, report = sanity(work_dir, DRIVER, "--repeat", "2")
    assert report["attach"] is False
    assert set(statuses(report).values()) == {"PASS"}, report["results"]
    assert code == 0
    verbs = {item["verb"] for item in report["latency"]}
    assert {"init", "mount", "unmount", "expandfs"} <= verbs


def test_flexvol_passes_every_check_attachable(work_dir: Path) -> None:
    result = CliRunner().invoke(load_commands(), ["sanity", str(DRIVER), "--env", "FLEXVOL_ATTACH=1",
                                                  "--repeat", "2", "--tmp-dir", str(work_dir)], env=CLI_ENV)
    assert "attachable (controller-manager attaches)" in result.output
    assert "0 failed" in result.output, result.output
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in ("lifecycle", "repeat", "concurrent", "no-reformat", "expandfs"):
        assert any(line.split()[:1] == [name] and "PASS" in line.split() for line in lines), name
    assert "call latency" in result.output and "mountdevice" in result.output


def test_explicit_attach_mode_needs_no_driver_setting(work_dir: Path) -> None:
    # --attach-mode controller runs the attachable flow whatever init says.
    _, report = sanity(work_dir, DRIVER, "--attach-mode", "controller", "--only", "lifecycle")
    assert report["attach"] is True
    assert statuses(report) == {"lifecycle": "PASS"}


@pytest.mark.parametrize(("broken", "check", "says"), [
    ("stderr-noise", "output", "not exactly one JSON object"),
    ("success-exit-1", "exit-codes", "Success with exit code 1"),
    ("stacks-mounts", "repeat", "2 mounts are stacked"),
    ("reformats", "no-reformat", "the data written before is gone"),
    ("leaks-loop", "lifecycle", "left behind loop device"),
    ("flaky-not-supported", "not-supported-stable", "mount answered Not supported for some arguments"),
    ("hangs", "bounded-time", "mount did not finish in time"),
])
def test_each_broken_driver_fails_the_check_meant_for_it(work_dir: Path, broken: str, check: str,
                                                         says: str) -> None:
    code, report = sanity(work_dir, BROKEN / broken, "--only", check, "--repeat", "2", "--timeout", "4")
    assert code == 1
    [result] = report["results"]
    assert result["status"] == "FAIL"
    assert says in result["reason"], result["reason"]
    assert result["argv"] and result["argv"][0] == str(BROKEN / broken)


def test_checks_that_need_a_capability_are_skipped(work_dir: Path) -> None:
    # A driver claiming requiresFSResize false and fsGroup true: expandfs and fsgroup are SKIPped.
    wrapper = work_dir / "mnt" / "claims-less"
    wrapper.write_text(
        "#!/usr/bin/python3 -IS\n"
        "import json, subprocess, sys\n"
        f"done = subprocess.run([{str(DRIVER)!r}, *sys.argv[1:]], capture_output=True, text=True)\n"
        "reply = json.loads(done.stdout)\n"
        "if sys.argv[1:2] == ['init']:\n"
        "    reply['capabilities'].update(requiresFSResize=False, fsGroup=True)\n"
        "print(json.dumps(reply))\n"
        "sys.exit(done.returncode)\n")
    wrapper.chmod(0o755)
    try:
        _, report = sanity(work_dir, wrapper, "--only", "expandfs", "--only", "fsgroup")
    finally:
        wrapper.unlink()
    assert statuses(report) == {"expandfs": "SKIP", "fsgroup": "SKIP"}
    reasons = " ".join(item["reason"] for item in report["results"])
    assert "requiresFSResize false" in reasons and "fsGroup capability true" in reasons


def test_kubelet_fallbacks_for_a_driver_without_mount(work_dir: Path) -> None:
    # An attachable driver that answers Not supported to mount and unmount: the kubelet
    # bind-mounts the global device mount into the pod dir and unmounts it itself (section 3).
    wrapper = work_dir / "mnt" / "mountdevice-only"
    wrapper.write_text(
        "#!/usr/bin/python3 -IS\n"
        "import os, sys\n"
        "if sys.argv[1:2] in (['mount'], ['unmount']):\n"
        "    print('{\"status\": \"Not supported\"}')\n"
        "    sys.exit(0)\n"
        f"os.execv({str(DRIVER)!r}, [{str(DRIVER)!r}, *sys.argv[1:]])\n")
    wrapper.chmod(0o755)
    try:
        _, report = sanity(work_dir, wrapper, "--attach-mode", "controller", "--only", "lifecycle",
                           "--only", "read-only")
    finally:
        wrapper.unlink()
    assert statuses(report) == {"lifecycle": "PASS", "read-only": "PASS"}, report["results"]
    # mount and unmount were asked once each (then remembered as Not supported), never again.
    calls = {item["verb"]: item["calls"] for item in report["latency"]}
    assert calls["mount"] == 2 and calls["unmount"] == 2


@pytest.mark.parametrize("size", ["64Mi", "320Mi"])
def test_user_options_without_placeholders_pass_a_correct_driver(work_dir: Path, size: str) -> None:
    """Defect: with --options fixing volumeID and size, expandfs reused the user's volume (which
    lifecycle had formatted as ext4) and asked for xfs below its minimum, failing a correct driver.
    Each check now has a volume of its own and a size and filesystem that fit."""
    user = json.dumps({"volumeID": "v", "size": size})
    code, report = sanity(work_dir, DRIVER, "--options", user, "--repeat", "1",
                          "--only", "lifecycle", "--only", "no-reformat", "--only", "expandfs")
    assert statuses(report) == {"lifecycle": "PASS", "no-reformat": "PASS", "expandfs": "PASS"}, \
        report["results"]
    assert code == 0


def test_pinned_ext4_without_online_growth_is_skipped_not_failed(work_dir: Path) -> None:
    """Defect: a choice the options force on the checker (ext4, where ext4 cannot grow online)
    is a SKIP with the reason, never a FAIL of the driver."""
    with open("/proc/self/status") as handle:
        mask = int(next(line for line in handle if line.startswith("CapEff:")).split()[1], 16)
    if mask >> 24 & 1:
        pytest.skip("CAP_SYS_RESOURCE is effective here: ext4 grows online, nothing to skip")
    user = json.dumps({"volumeID": "{volume}", "size": "{size}", "kubernetes.io/fsType": "ext4"})
    code, report = sanity(work_dir, DRIVER, "--options", user, "--repeat", "1", "--only", "expandfs")
    result = report["results"][0]
    assert result["status"] == "SKIP" and "CAP_SYS_RESOURCE" in result["reason"], result
    assert code == 0
