"""`flexvol simulate`: a PV + PVC + Pod walked through the node's flow on real loop devices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexvol import kernel
from flexvol.cli.main import load_commands
from tests.helpers.driver import DRIVER, REPO, Driver

EXAMPLES = REPO / "examples"
CLI_ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


@pytest.fixture
def work_dir(driver: Driver) -> Path:
    # The fixture's finalizer unmounts and detaches whatever is left under it.
    return driver.base


def simulate(work_dir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(load_commands(), [
        "simulate", "--driver", str(DRIVER), "--env", f"FLEXVOL_ROOT={work_dir / 'root'}",
        "--tmp-dir", str(work_dir), *args], env=CLI_ENV)
    return result.exit_code, result.stdout


def ours(work_dir: Path) -> tuple[list[str], list[str]]:
    loops = [device for device, backing in kernel.loop_devices().items() if str(work_dir) in backing]
    mounts = [mount.mount_point for mount in kernel.read_mounts() if str(work_dir) in mount.mount_point]
    return loops, mounts


def test_pv_pvc_pod_walks_the_flow_and_cleans_up(work_dir: Path) -> None:
    code, output = simulate(work_dir, "-f", str(EXAMPLES / "storageclass.yaml"),
                            "-f", str(EXAMPLES / "pv-pvc-pod.yaml"))
    assert code == 0, output
    assert "claim default/data binds to PV pv-data-1" in output
    verbs = [line.split()[2] for line in output.splitlines() if line.strip().startswith("+")]
    assert verbs == ["init", "mount", "running", "unmount"], output
    # The volume was really made (backing file of the PV's size) and nothing stays attached.
    assert (work_dir / "root" / "volumes" / "data-1.img").stat().st_size == 128 << 20
    assert ours(work_dir) == ([], [])


def test_attachable_driver_gets_the_attach_flow(work_dir: Path) -> None:
    code, output = simulate(work_dir, "--env", "FLEXVOL_ATTACH=1", "--json", "-f",
                            str(EXAMPLES / "inline-pod.yaml"))
    assert code == 0, output
    [entry] = json.loads(output)
    steps = entry["outcome"]["steps"]
    assert [(step["component"], step["verb"]) for step in steps] == [
        ("kubelet", "init"), ("controller-manager", "attach"), ("controller-manager", "isattached"),
        ("kubelet", "waitforattach"), ("kubelet", "mountdevice"), ("kubelet", "mount"),
        ("kubelet", "unmount"), ("kubelet", "unmountdevice"), ("controller-manager", "detach")]
    assert all(step["status"] == "Success" for step in steps)
    mount_options = json.loads(steps[5]["argv"][2])
    assert mount_options["kubernetes.io/pod.name"] == "inline-demo"
    assert mount_options["kubernetes.io/mounterArgs.FsGroup"] == "2000"
    assert mount_options["kubernetes.io/pvOrVolumeName"] == "scratch"
    assert ours(work_dir) == ([], [])


def test_no_teardown_leaves_the_volume_mounted(work_dir: Path) -> None:
    code, output = simulate(work_dir, "--no-teardown", "-f", str(EXAMPLES / "inline-pod.yaml"))
    assert code == 0, output
    loops, mounts = ours(work_dir)
    assert len(loops) == 1 and len(mounts) == 1
    assert "(left mounted: --no-teardown)" in " ".join(output.split())
    # The pod's fsGroup reached the driver, which gave the volume root to that group.
    assert Path(mounts[0]).stat().st_gid == 2000


def test_a_pod_with_several_volumes_stops_at_the_first_failure_and_tears_down(work_dir: Path) -> None:
    manifest = work_dir / "mnt" / "two.yaml"
    manifest.write_text("""
kind: Pod
metadata: {name: two}
spec:
  volumes:
    - {name: a, flexVolume: {driver: flexvol/loop, options: {volumeID: two-a, size: 32Mi}}}
    - {name: cache, emptyDir: {}}
    - {name: b, flexVolume: {driver: flexvol/loop, readOnly: true, options: {volumeID: two-b}}}
""")
    code, output = simulate(work_dir, "--json", "-f", str(manifest))
    assert code == 1
    entries = {entry["volume"]["name"]: entry for entry in json.loads(output)}
    assert [step["verb"] for step in entries["a"]["outcome"]["steps"]] == ["init", "mount", "unmount"]
    # b is read-only and new: the driver refuses to create it, so the pod never starts.
    assert "read-only mount never creates" in entries["b"]["outcome"]["error"]
    assert "outcome" not in entries["cache"]
    assert ours(work_dir) == ([], [])
