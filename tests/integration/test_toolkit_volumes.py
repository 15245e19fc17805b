"""flexvol ls, show, create, delete, resize, capacity, calls and call on real loop devices."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from flexvol.core import kernel, state
from flexvol.core.config import Config
from tests.helpers.cli import flexvol, flexvol_json
from tests.helpers.driver import DRIVER, Driver, options


def blkid_type(path: Path) -> str:
    done = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(path)],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip()


def pod_dir(driver: Driver, uid: str, name: str) -> str:
    return str(driver.base / "kubelet" / "pods" / uid / "volumes" / "flexvol~loop" / name)


def test_create_formats_once_and_the_driver_mounts_without_reformatting(driver: Driver) -> None:
    result = flexvol("create", "v1", "--size", "64Mi", root=str(driver.root))
    assert result.exit_code == 0, result.output
    record = driver.record("v1")
    assert record["created_by"] == "flexvol create"
    assert record["formatted"]["fs_type"] == "ext4"
    assert blkid_type(driver.backing_file("v1")) == "ext4"
    assert driver.backing_file("v1").stat().st_size == 64 << 20
    assert not driver.loops(), "create must not leave its loop device attached"
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1", size="64Mi"))
    assert driver.record("v1")["formatted"]["uuid"] == record["formatted"]["uuid"]
    driver.ok("unmount", target)


def test_create_refuses_an_existing_volume(driver: Driver) -> None:
    assert flexvol("create", "v1", "--size", "64Mi", root=str(driver.root)).exit_code == 0
    uuid = driver.record("v1")["formatted"]["uuid"]
    result = flexvol("create", "v1", "--size", "64Mi", root=str(driver.root))
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert "Traceback" not in result.output
    assert driver.record("v1")["formatted"]["uuid"] == uuid


def test_create_preallocate_reserves_blocks_and_driver_still_mounts(driver: Driver) -> None:
    result = flexvol("create", "v1", "--size", "96Mi", "--preallocate", root=str(driver.root))
    assert result.exit_code == 0, result.output
    info = driver.backing_file("v1").stat()
    assert info.st_blocks * 512 >= 96 << 20
    uuid = driver.record("v1")["formatted"]["uuid"]
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1", size="96Mi"))
    Path(target, "f").write_bytes(b"x" * 4096)
    assert driver.record("v1")["formatted"]["uuid"] == uuid
    driver.ok("unmount", target)


def test_ls_json_shows_mounts_with_pod_and_state(driver: Driver) -> None:
    kubelet = str(driver.base / "kubelet")
    target = pod_dir(driver, "uid-123", "data")
    driver.ok("mount", target, options("v1"))
    flexvol("create", "v2", "--size", "64Mi", "--thin", root=str(driver.root))
    views = {item["volume_id"]: item for item in
             flexvol_json("ls", root=str(driver.root), kubelet_root=kubelet)}
    named = pod_dir(driver, "uid-456", "data")
    driver.ok("mount", named, options("v1", **{"kubernetes.io/pod.name": "web-0",
                                               "kubernetes.io/pod.namespace": "shop"}))
    views = {item["volume_id"]: item for item in
             flexvol_json("ls", root=str(driver.root), kubelet_root=kubelet)}
    assert {m["path"]: m["pod"] for m in views["v1"]["mounts"]}[named] == "shop/web-0"
    driver.ok("unmount", named)
    views = {item["volume_id"]: item for item in
             flexvol_json("ls", root=str(driver.root), kubelet_root=kubelet)}
    assert views["v1"]["state"] == "mounted"
    assert views["v1"]["mounts"][0]["path"] == target
    assert views["v1"]["mounts"][0]["pod"] == "uid-123"
    assert views["v1"]["loop_devices"] == kernel.loops_of_file(str(driver.backing_file("v1")))
    assert views["v1"]["direct_io"] in (True, False)
    assert views["v2"]["state"] == "idle"
    assert views["v2"]["allocated_bytes"] < views["v2"]["size_bytes"]
    table = flexvol("ls", root=str(driver.root), kubelet_root=kubelet)
    assert table.exit_code == 0
    line = next(row for row in table.stdout.splitlines() if row.startswith("v1 "))
    assert "mounted" in line and "[uid-123]" in line and driver.loops()[0] in line
    driver.ok("unmount", target)


def test_delete_refuses_while_mounted_and_asks(driver: Driver) -> None:
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1"))
    result = flexvol("delete", "v1", "--yes", root=str(driver.root))
    assert result.exit_code == 1
    assert "in use" in result.output and target in result.output
    assert driver.backing_file("v1").exists()
    driver.ok("unmount", target)
    answered_no = flexvol("delete", "v1", root=str(driver.root), input="n\n")
    assert answered_no.exit_code == 1
    assert driver.backing_file("v1").exists()
    answered_yes = flexvol("delete", "v1", root=str(driver.root), input="y\n")
    assert answered_yes.exit_code == 0, answered_yes.output
    assert not driver.backing_file("v1").exists()
    assert not (driver.root / "records" / "v1.json").exists()
    assert flexvol_json("ls", root=str(driver.root)) == []


def test_delete_refuses_while_attached_to_a_node(attach_driver: Driver) -> None:
    driver = attach_driver
    flexvol("create", "v1", "--size", "64Mi", root=str(driver.root))
    driver.ok("attach", options("v1", pv="pv-a"), "node-1")
    result = flexvol("delete", "v1", "--yes", root=str(driver.root))
    assert result.exit_code == 1 and "node-1" in result.output
    assert driver.backing_file("v1").exists()


def test_resize_offline_grows_file_and_filesystem(driver: Driver) -> None:
    flexvol("create", "v1", "--size", "64Mi", root=str(driver.root))
    result = flexvol("resize", "v1", "128Mi", root=str(driver.root))
    assert result.exit_code == 0, result.output
    assert driver.backing_file("v1").stat().st_size == 128 << 20
    assert driver.record("v1")["size_bytes"] == 128 << 20
    assert not driver.loops(), "an idle volume is left idle"
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1"))
    grown = os.statvfs(target)
    assert grown.f_blocks * grown.f_frsize > 100 << 20
    refused = flexvol("resize", "v1", "64Mi", root=str(driver.root))
    assert refused.exit_code == 1 and "never shrinks" in refused.output
    driver.ok("unmount", target)


def test_resize_online_grows_a_mounted_filesystem(driver: Driver) -> None:
    # xfs: online ext4 growth needs CAP_SYS_RESOURCE, which a container's root may lack;
    # xfs_growfs needs only CAP_SYS_ADMIN.
    flexvol("create", "v1", "--size", "320Mi", "--fs", "xfs", root=str(driver.root))
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1", fs="xfs", size="320Mi"))
    before = os.statvfs(target)
    result = flexvol("resize", "v1", "480Mi", root=str(driver.root))
    assert result.exit_code == 0, result.output
    after = os.statvfs(target)
    assert after.f_blocks * after.f_frsize > before.f_blocks * before.f_frsize + (100 << 20)
    assert driver.backing_file("v1").stat().st_size == 480 << 20
    driver.ok("unmount", target)


def test_show_names_the_processes_that_hold_a_mounted_volume(driver: Driver) -> None:
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1"))
    Path(target, "blob").write_bytes(b"y" * (3 << 20))
    holder = subprocess.Popen(["sleep", "60"], cwd=target)
    try:
        shown = flexvol_json("show", "v1", root=str(driver.root))
        assert {"pid": holder.pid, "name": "sleep", "path": target} in shown["processes"]
        assert shown["fs_used_bytes"] >= 3 << 20
    finally:
        holder.kill()
        holder.wait()
    driver.ok("unmount", target)


def test_show_and_calls_read_the_journal(driver: Driver) -> None:
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1"))
    driver.ok("unmount", target)
    driver.fail("mount", target, options("v1", fs="xfs", size="400Mi"))
    shown = flexvol_json("show", "v1", root=str(driver.root))
    assert [call["verb"] for call in shown["calls"]] == ["mount", "unmount", "mount"]
    assert shown["record"]["formatted"]["fs_type"] == "ext4"
    entries = flexvol_json("calls", "--verb", "mount", root=str(driver.root))
    assert [entry["status"] for entry in entries] == ["Success", "Failure"]
    stats = flexvol_json("calls", "--stats", root=str(driver.root))
    assert stats["mount"]["calls"] == 2 and stats["mount"]["failed"] == 1
    assert stats["unmount"]["calls"] == 1
    text = flexvol("calls", "--last", "1", root=str(driver.root))
    assert text.exit_code == 0 and "Failure" in text.stdout and "ext4" in text.stdout


def test_call_shows_the_reply_readable_and_raw(driver: Driver) -> None:
    result = flexvol("call", "--driver", str(DRIVER), "init")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Success (exit code 0)")
    raw = result.stdout.split("raw:\n", 1)[1]
    assert json.loads(raw)["capabilities"]["requiresFSResize"] is True
    failed = flexvol("call", "--driver", str(DRIVER), "--json", "unmount", "relative")
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["reply"]["status"] == "Failure"


def test_capacity_sums_volume_sizes(driver: Driver) -> None:
    flexvol("create", "v1", "--size", "64Mi", "--thin", root=str(driver.root))
    flexvol("create", "v2", "--size", "32Mi", "--thin", root=str(driver.root))
    found = flexvol_json("capacity", root=str(driver.root))
    assert found["committed_bytes"] == 96 << 20
    assert 0 < found["allocated_bytes"] < 96 << 20
    assert found["pool_bytes"] > found["pool_free_bytes"] > 0


def test_budget_refuses_create_mount_and_resize_past_it(driver: Driver) -> None:
    flexvol("create", "v1", "--size", "64Mi", root=str(driver.root))
    pool = os.statvfs(driver.root / "volumes")
    pool_bytes = pool.f_blocks * pool.f_frsize
    # a budget of 96 MiB: v1 fits, another 64 MiB does not
    (driver.root / "overcommit").write_text(f"{(96 << 20) / pool_bytes:.12f}\n")
    refused = flexvol("create", "v2", "--size", "64Mi", root=str(driver.root))
    assert refused.exit_code == 1
    assert "over" in refused.output and "budget" in refused.output
    assert not driver.backing_file("v2").exists()
    failed = driver.fail("mount", driver.dir("pod"), options("v3", size="64Mi"))
    assert "budget" in failed.message
    assert not driver.backing_file("v3").exists()
    grow = flexvol("resize", "v1", "128Mi", root=str(driver.root))
    assert grow.exit_code == 1 and "budget" in grow.output
    assert driver.backing_file("v1").stat().st_size == 64 << 20
    found = flexvol_json("capacity", root=str(driver.root))
    assert found["committed_bytes"] == 64 << 20
    assert abs(found["budget_bytes"] - (96 << 20)) < 1 << 20


def test_install_places_a_driver_with_the_data_root_baked_in(driver: Driver) -> None:
    plugins = driver.base / "plugins"
    data = driver.base / "installed-root"
    result = flexvol("install", "--plugin-dir", str(plugins), "--data-root", str(data))
    assert result.exit_code == 0, result.output
    installed = plugins / "flexvol~loop" / "loop"
    assert os.access(installed, os.X_OK)
    assert sorted(os.listdir(plugins / "flexvol~loop")) == ["loop"]
    again = flexvol("install", "--plugin-dir", str(plugins), "--data-root", str(data))
    assert "already up to date" in again.stdout
    target = driver.dir("pod")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    done = subprocess.run([str(installed), "mount", target, options("v1")], env=env,
                          capture_output=True, text=True, check=False)
    assert json.loads(done.stdout)["status"] == "Success", done.stdout
    assert (data / "volumes" / "v1.img").exists()
    subprocess.run([str(installed), "unmount", target], env=env, capture_output=True, check=True)
    assert flexvol("install", "--plugin-dir", str(plugins), "--data-root", str(data),
                   "--attach").exit_code == 0
    assert json.loads(subprocess.run([str(installed), "init"], capture_output=True, text=True,
                                     check=True).stdout)["capabilities"]["attach"] is True
    assert flexvol("uninstall", "--plugin-dir", str(plugins)).exit_code == 0
    assert not (plugins / "flexvol~loop").exists()
    assert (data / "volumes" / "v1.img").exists(), "uninstall keeps the data root"


def test_the_toolkits_own_actions_are_in_the_journal(driver: Driver) -> None:
    """The toolkit's own actions (create, resize, delete, repair) were not journaled: `flexvol
    calls` showed only the kubelet's calls, nothing of who created or deleted a volume."""
    root = str(driver.root)
    assert flexvol("create", "v1", "--size", "64Mi", root=root).exit_code == 0
    assert flexvol("create", "v1", "--size", "64Mi", root=root).exit_code == 1  # exists: refused
    assert flexvol("resize", "v1", "96Mi", root=root).exit_code == 0
    assert flexvol("delete", "v1", "--yes", root=root).exit_code == 0
    state.save_record(Config(root), state.new_record("lost", 1 << 20, "ext4"))  # its file is gone
    assert flexvol("repair", "--apply", root=root).exit_code == 0
    entries = [entry for entry in flexvol_json("calls", "--last", "0", root=root)
               if entry["verb"].startswith("toolkit:")]
    assert [(entry["verb"], entry["volume"], entry["status"]) for entry in entries] == [
        ("toolkit:create", "v1", "Success"), ("toolkit:create", "v1", "Failure"),
        ("toolkit:resize", "v1", "Success"), ("toolkit:delete", "v1", "Success"),
        ("toolkit:repair", "lost", "Success")]
    assert all(entry["who"].startswith("root (uid 0)") for entry in entries)
    created, refused, resized, deleted, repaired = entries
    assert "created v1: 64Mi ext4" in created["message"]
    assert any(command["argv"].startswith("mkfs.ext4") for command in created["commands"])
    assert "already exists" in refused["message"]
    assert resized["message"] == "v1 is now 96Mi"
    assert deleted["message"].startswith("deleted v1")
    assert "record-without-file" in repaired["message"]
    text = flexvol("calls", "--verb", "toolkit:delete", root=root)
    assert "toolkit:delete" in text.stdout and "(by root (uid 0)" in text.stdout
