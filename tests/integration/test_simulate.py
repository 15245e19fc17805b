"""`flexvol simulate`: a PV + PVC + Pod walked through the node's flow on real loop devices."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flexvol.cli import common
from flexvol.cli.main import load_commands
from flexvol.core import config, kernel
from flexvol.toolkit import plugindir
from tests.helpers.cli import flexvol
from tests.helpers.driver import DRIVER, REPO, Driver, is_mount_point, options

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


def baked_driver(base: Path, data_root: Path) -> Path:
    """The driver as install.sh places it: its own data root `data_root` baked in."""
    path = base / "plugins" / "flexvol~loop" / "loop"
    path.parent.mkdir(parents=True)
    path.write_text(plugindir.driver_script(str(data_root), False, site=str(REPO)))
    path.chmod(0o755)
    return path


@pytest.fixture
def default_pool(driver: Driver, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for /var/lib/flexvol: the data root baked into the driver and the toolkit's
    default, so that any call that leaks to the default pool lands (visibly) here."""
    default = driver.base / "default-pool"
    default.mkdir()
    monkeypatch.setattr(config, "DEFAULT_DATA_ROOT", str(default))
    monkeypatch.setattr(common, "DEFAULT_ROOT", str(default))
    return default


@pytest.mark.parametrize("manifests,volume_id", [
    (["inline-pod.yaml"], "inline-demo"),
    (["storageclass.yaml", "pv-pvc-pod.yaml"], "data-1"),
])
def test_simulate_honours_flexvol_root_not_the_default_pool(driver: Driver, default_pool: Path,
                                                            manifests: list[str], volume_id: str) -> None:
    """Defect 1: simulate ran the driver with a bare environment, so the README's own example
    made and mounted volumes in the default pool whatever FLEXVOL_ROOT said."""
    executable = baked_driver(driver.base, default_pool)
    files = [arg for name in manifests for arg in ("-f", str(EXAMPLES / name))]
    result = CliRunner().invoke(load_commands(), [
        "simulate", "--driver", str(executable), "--tmp-dir", str(driver.base), *files],
        env={**CLI_ENV, "FLEXVOL_ROOT": str(driver.root)})
    assert result.exit_code == 0, result.output
    assert list(default_pool.iterdir()) == [], "nothing is made in another data root"
    assert (driver.root / "volumes" / f"{volume_id}.img").exists()
    assert f"data root {driver.root} (given" in result.stdout
    assert ours(driver.base) == ([], [])


def test_simulate_without_a_root_uses_a_scratch_root_and_removes_it(driver: Driver,
                                                                    default_pool: Path) -> None:
    """Defect 1: with no --root nor FLEXVOL_ROOT, simulate works in a scratch data root it makes
    and removes, says which, and the kernel holds nothing of it afterwards."""
    executable = baked_driver(driver.base, default_pool)
    result = CliRunner().invoke(load_commands(), [
        "simulate", "--driver", str(executable), "--tmp-dir", str(driver.base), "--json",
        "-f", str(EXAMPLES / "inline-pod.yaml")], env={**CLI_ENV, "FLEXVOL_ROOT": None})
    assert result.exit_code == 0, result.output
    assert list(default_pool.iterdir()) == [], "nothing is made in the default pool"
    [entry] = json.loads(result.stdout)
    scratch = entry["data_root"]
    assert scratch.startswith(str(driver.base) + "/") and scratch != str(default_pool)
    mount = next(step for step in entry["outcome"]["steps"] if step["verb"] == "mount")
    assert mount["status"] == "Success"
    assert not os.path.exists(scratch), "the scratch data root is removed"
    assert list(default_pool.iterdir()) == []
    assert ours(driver.base) == ([], [])
    human = CliRunner().invoke(load_commands(), [
        "simulate", "--driver", str(executable), "--tmp-dir", str(driver.base),
        "-f", str(EXAMPLES / "inline-pod.yaml")], env={**CLI_ENV, "FLEXVOL_ROOT": None})
    assert human.exit_code == 0, human.output
    assert "(scratch, made for this run and removed at the end)" in human.stdout
    assert "nothing left behind" in human.stdout
    assert list(default_pool.iterdir()) == [] and ours(driver.base) == ([], [])


def test_call_honours_flexvol_root_not_the_default_pool(driver: Driver, default_pool: Path) -> None:
    """Defect 1: `flexvol call` ran the driver with a bare environment: it mounted the default
    pool's volume of that id whatever FLEXVOL_ROOT or --root said."""
    executable = baked_driver(driver.base, default_pool)
    target = driver.dir("pod")
    os.makedirs(target)
    mounted = flexvol("call", "--driver", str(executable), "mount", target, options("c1"),
                      root=str(driver.root))
    assert mounted.exit_code == 0, mounted.output
    assert is_mount_point(target)
    assert (driver.root / "volumes" / "c1.img").exists()
    assert list(default_pool.iterdir()) == []
    # --root wins over FLEXVOL_ROOT: in another data root the mount is not a volume of its own
    other = driver.base / "other-root"
    refused = flexvol("call", "--driver", str(executable), "--root", str(other), "unmount", target,
                      root=str(driver.root))
    assert refused.exit_code == 1 and "not a flexvol volume" in refused.stdout, refused.output
    assert is_mount_point(target)
    unmounted = flexvol("call", "--driver", str(executable), "unmount", target, root=str(driver.root))
    assert unmounted.exit_code == 0, unmounted.output
    assert not is_mount_point(target)
    assert list(default_pool.iterdir()) == []
