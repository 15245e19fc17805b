"""`flexvol csi` on the current cluster: the plugin registers itself with the kubelet, the
external-provisioner of deploy/csi runs beside it (--node-deployment, --enable-capacity) as a
host process, and the scenarios use only Kubernetes objects: StorageClass, claims, pods."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flexvol.core import budget
from flexvol.core.config import Config
from flexvol.core.quantity import parse_quantity
from tests.e2e import sidecars
from tests.e2e.claims import (
    DF_SCRIPT,
    delete_pod,
    describe,
    file_in_volume,
    grow_to_400mi,
    released,
    wait_file,
    wait_running,
)
from tests.e2e.csi import (
    CSI_DIR,
    DRIVER,
    NAMESPACE,
    TICK_SCRIPT,
    TOPOLOGY_KEY,
    backing,
    block_claim,
    block_pod,
    bound_pv,
    clone_claim,
    csi_class,
    delete_claims,
    flexvol,
    install_snapshot_crds,
    node_logs,
    plugin_calls,
    plugin_failures,
    plugin_log_mark,
    provisioner_log,
    published,
    pv_gone,
    release_pod,
    restart_exited_sidecars,
    restored_claim,
    sidecars_bin_dir,
    snapshot,
    start_plugin,
    start_resizer,
    start_sidecar,
    target_records,
    ticks,
    volume_loops,
    volume_of,
    wait_claim_bound,
    wait_log,
)
from tests.e2e.harness import Cluster, wait_for
from tests.e2e.pods import claim, claim_pod, persistent_volume, pod, storage_class
from tests.e2e.provisioning import events

DELETE_CLASS = "flexvol-csi"
RETAIN_CLASS = "flexvol-csi-retain"


@pytest.fixture(scope="module")
def csi(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster with the CSIDriver object, `flexvol csi` registered with the kubelet and the
    csi-provisioner beside it."""
    started = time.monotonic()
    bin_dir, why_not = sidecars_bin_dir()
    if bin_dir is None:
        pytest.skip(why_not)
    cluster.kubectl("apply", "-f", str(CSI_DIR / "csidriver.yaml"))
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.apply(csi_class(DELETE_CLASS), csi_class(RETAIN_CLASS, reclaim="Retain"))
    running: list[sidecars.Sidecar] = []
    try:
        start_plugin(cluster)
        running.append(start_sidecar(cluster, "csi-provisioner", bin_dir))
        start_resizer(cluster, bin_dir)
        cluster.csi_sidecars = running  # type: ignore[attr-defined]
        print(f"\nCSI plugin and provisioner up in {time.monotonic() - started:.0f}s")
        yield cluster
    finally:
        print("\n" + sidecars.collect_logs(running, 40))
        sidecars.stop_all(running)
        cluster.stop_process("csi-resizer")
        cluster.stop_process("csi")


def test_a_wait_for_first_consumer_claim_gets_a_node_pinned_volume_that_outlives_its_pod(
        csi: Cluster) -> None:
    cluster = csi
    cluster.apply(claim("csi-data", size="64Mi", storage_class=DELETE_CLASS))
    # No pod yet: the claim waits for its consumer, nothing is created.
    time.sleep(3)
    assert cluster.get("pvc", "csi-data")["status"]["phase"] == "Pending"
    assert not list(cluster.data_root.glob("volumes/*.img"))

    cluster.apply(claim_pod("csi-writer", "echo csi-bytes > /data/hello && sync && echo WROTE", "csi-data"))
    wait_claim_bound(cluster, "csi-data")
    pv = bound_pv(cluster, "csi-data")
    volume = volume_of(pv)
    assert pv["spec"]["csi"]["driver"] == DRIVER
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": TOPOLOGY_KEY, "operator": "In",
                                            "values": [cluster.node_name]}]}], terms
    wait_running(cluster, "csi-writer")
    wait_log(cluster, "csi-writer", "WROTE")
    assert backing(cluster, volume).exists()
    assert len(volume_loops(cluster, volume)) == 1
    assert cluster.volume_mounts(volume), "the volume is not mounted under the kubelet's root"

    release_pod(cluster, "csi-writer", volume)
    assert backing(cluster, volume).exists(), "the volume went with its pod"
    cluster.apply(claim_pod("csi-reader", "echo READ:$(cat /data/hello)", "csi-data"))
    wait_log(cluster, "csi-reader", "READ:csi-bytes")
    release_pod(cluster, "csi-reader", volume)

    cluster.kubectl("delete", "pvc", "csi-data", "--wait=false")
    wait_for(f"PV {pv['metadata']['name']} and volume {volume} to be deleted",
             lambda: pv_gone(cluster, pv["metadata"]["name"]) and not backing(cluster, volume).exists(), 120,
             on_timeout=lambda: describe(cluster, "pv", pv["metadata"]["name"]) + provisioner_log(cluster))
    assert not volume_loops(cluster, volume)


def test_a_retained_csi_volume_keeps_its_backing_file_after_the_claim_goes(csi: Cluster) -> None:
    cluster = csi
    cluster.apply(claim("csi-kept", size="64Mi", storage_class=RETAIN_CLASS),
                  claim_pod("csi-keeper", "echo kept > /data/k && sync && echo WROTE", "csi-kept"))
    wait_claim_bound(cluster, "csi-kept")
    pv = bound_pv(cluster, "csi-kept")
    volume = volume_of(pv)
    wait_log(cluster, "csi-keeper", "WROTE")
    release_pod(cluster, "csi-keeper", volume)
    cluster.kubectl("delete", "pvc", "csi-kept", "--wait=false")
    name = pv["metadata"]["name"]
    wait_for(f"PV {name} to be Released",
             lambda: cluster.get("pv", name)["status"]["phase"] == "Released", 60,
             on_timeout=lambda: describe(cluster, "pv", name))
    time.sleep(3)  # a wrong DeleteVolume would come now
    assert backing(cluster, volume).exists(), "a Retain volume was deleted"
    assert not volume_loops(cluster, volume)
    cluster.kubectl("delete", "pv", name)
    assert backing(cluster, volume).exists()


def test_a_raw_block_claim_gives_the_pod_a_device_it_writes_and_reads(csi: Cluster) -> None:
    cluster = csi
    script = ("echo block-bytes | dd of=/dev/xvda bs=512 conv=sync 2>/dev/null && sync && "
              "echo READ:$(dd if=/dev/xvda bs=11 count=1 2>/dev/null)")
    cluster.apply(block_claim("csi-block", DELETE_CLASS), block_pod("csi-blockpod", script, "csi-block"))
    wait_claim_bound(cluster, "csi-block")
    pv = bound_pv(cluster, "csi-block")
    assert pv["spec"]["volumeMode"] == "Block"
    volume = volume_of(pv)
    wait_log(cluster, "csi-blockpod", "READ:block-bytes")
    # The bytes are in the backing file itself: no filesystem in between.
    assert backing(cluster, volume).read_bytes()[:12] == b"block-bytes\n"
    assert len(volume_loops(cluster, volume)) == 1
    delete_pod(cluster, "csi-blockpod")
    wait_for("the block volume's loop device to go", lambda: not volume_loops(cluster, volume), 120,
             on_timeout=lambda: cluster.log_tail("csi"))
    cluster.kubectl("delete", "pvc", "csi-block", "--wait=false")
    wait_for(f"volume {volume} to be deleted",
             lambda: pv_gone(cluster, pv["metadata"]["name"]) and not backing(cluster, volume).exists(), 120,
             on_timeout=lambda: provisioner_log(cluster))


def test_an_inline_ephemeral_volume_comes_with_its_pod_and_goes_with_it(csi: Cluster) -> None:
    cluster = csi
    before = set(cluster.loops().values())
    volume = {"csi": {"driver": DRIVER, "volumeAttributes": {"size": "48Mi", "fsType": "ext4"}}}
    cluster.apply(pod("csi-inline", "echo eph > /data/e && echo READ:$(cat /data/e) SIZE:$(df -k /data | "
                      "tail -1 | tr -s ' ' | cut -d' ' -f2)", volume))
    wait_log(cluster, "csi-inline", "READ:eph")
    made = set(cluster.loops().values()) - before
    assert len(made) == 1, made
    path = made.pop()
    assert path.startswith(str(cluster.data_root / "volumes"))
    delete_pod(cluster, "csi-inline")
    wait_for("the inline volume to be deleted", lambda: path not in cluster.loops().values()
             and not Path(path).exists(), 120, on_timeout=lambda: cluster.log_tail("csi"))


def test_fs_group_reaches_the_volume_and_a_read_only_claim_refuses_writes(csi: Cluster) -> None:
    cluster = csi
    writer = claim_pod("csi-group", "touch /data/mine && echo GROUP:$(stat -c %g /data) "
                       "FILE:$(stat -c %g /data/mine)", "csi-grouped")
    writer["spec"]["securityContext"] = {"fsGroup": 4321, "runAsUser": 1000, "runAsGroup": 1000}
    cluster.apply(claim("csi-grouped", size="64Mi", storage_class=DELETE_CLASS), writer)
    wait_claim_bound(cluster, "csi-grouped")
    volume = volume_of(bound_pv(cluster, "csi-grouped"))
    log = wait_log(cluster, "csi-group", "GROUP:")
    assert "GROUP:4321 FILE:4321" in log, log
    release_pod(cluster, "csi-group", volume)

    reader = claim_pod("csi-ro", "touch /data/x 2>/dev/null && echo WRITABLE || echo READONLY", "csi-grouped")
    reader["spec"]["volumes"][0]["persistentVolumeClaim"]["readOnly"] = True
    cluster.apply(reader)
    log = wait_log(cluster, "csi-ro", "READ")
    assert "READONLY" in log, log
    mounts = cluster.volume_mounts(volume)
    pod_mounts = [m for m in cluster.mounts(cluster.kubelet_root / "pods") if m.mount_point in mounts]
    assert pod_mounts and all("ro" in m.options.split(",") for m in pod_mounts), \
        [(m.mount_point, m.options) for m in pod_mounts]
    release_pod(cluster, "csi-ro", volume)
    cluster.kubectl("delete", "pvc", "csi-grouped", "--wait=false")


def test_migrate_pv_moves_an_idle_flexvolume_pv_to_csi_and_a_new_pod_reads_its_data(
        csi: Cluster) -> None:
    cluster = csi
    assert cluster.kubeconfig
    flex_pv = persistent_volume("csi-migrated", "migrated", size="64Mi", storage_class="flexvol-static")
    flex_pv["spec"]["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [cluster.node_name]}]}]}}
    cluster.apply(storage_class("flexvol-static"), flex_pv,
                  claim("csi-migrating", size="64Mi", storage_class="flexvol-static"),
                  claim_pod("flex-writer", "echo flex-bytes > /data/old && sync && echo WROTE",
                            "csi-migrating"))
    uid = wait_claim_bound(cluster, "csi-migrating")["metadata"]["uid"]
    wait_log(cluster, "flex-writer", "WROTE")
    release_pod(cluster, "flex-writer", "migrated")

    done = cluster.run([flexvol(cluster), "migrate-pv", "csi-migrated",
                        "--kubeconfig", str(cluster.kubeconfig), "--node", cluster.node_name,
                        "--root", str(cluster.data_root), "--timeout", "90"],
                       check=False, timeout=180)
    assert done.returncode == 0, f"migrate-pv failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    pv = cluster.get("pv", "csi-migrated")
    assert "flexVolume" not in pv["spec"], pv["spec"]
    assert pv["spec"]["csi"]["driver"] == DRIVER and pv["spec"]["csi"]["volumeHandle"] == "migrated"
    bound = wait_claim_bound(cluster, "csi-migrating")
    assert bound["metadata"]["uid"] == uid and bound["spec"]["volumeName"] == "csi-migrated"

    cluster.apply(claim_pod("csi-migrated-reader", "echo READ:$(cat /data/old)", "csi-migrating"))
    wait_log(cluster, "csi-migrated-reader", "READ:flex-bytes")
    mounts = [m for m in cluster.mounts(cluster.kubelet_root / "pods")
              if m.mount_point in cluster.volume_mounts("migrated")]
    assert any("/volumes/kubernetes.io~csi/csi-migrated/" in m.mount_point for m in mounts), \
        [m.mount_point for m in mounts]
    release_pod(cluster, "csi-migrated-reader", "migrated")
    cluster.kubectl("delete", "pvc", "csi-migrating", "--wait=false")


def test_a_running_pods_xfs_claim_grows_online_through_the_resizer(csi: Cluster) -> None:
    cluster = csi
    cluster.apply(csi_class("flexvol-csi-xfs", fs_type="xfs"),
                  claim("csi-grow", size="300Mi", storage_class="flexvol-csi-xfs"),
                  claim_pod("csi-grower", DF_SCRIPT, "csi-grow"))
    wait_claim_bound(cluster, "csi-grow")
    pv = bound_pv(cluster, "csi-grow")
    volume = volume_of(pv)
    wait_running(cluster, "csi-grower")
    wait_file(cluster, volume, "df")
    [mount_point] = [m for m in cluster.volume_mounts(volume) if "/pods/" in m]
    assert [m.fs_type for m in cluster.mounts() if m.mount_point == mount_point] == ["xfs"]
    grow_to_400mi(cluster, "csi-grow", pv["metadata"]["name"], volume, mount_point)
    assert backing(cluster, volume).stat().st_size == 400 << 20
    release_pod(cluster, "csi-grower", volume)
    cluster.kubectl("delete", "pvc", "csi-grow", "--wait=false")


def test_storage_capacity_reflects_the_pool_and_a_claim_past_it_stays_pending(csi: Cluster) -> None:
    cluster = csi
    found = wait_for(f"a CSIStorageCapacity of {DELETE_CLASS} for node {cluster.node_name}",
                     lambda: published(cluster, DELETE_CLASS), 90,
                     on_timeout=lambda: cluster.kubectl("get", "csistoragecapacities", "-A", "-o", "yaml")
                     + provisioner_log(cluster))
    offered = parse_quantity(found["capacity"])
    assert parse_quantity(found["maximumVolumeSize"]) == offered
    pool = budget.measure(Config(str(cluster.data_root)))
    # The pool's free space moves with the machine's other files: the same figure within 256 MiB.
    assert abs(offered - pool.available_bytes) < 256 << 20, (offered, pool.as_dict())
    for name in (RETAIN_CLASS,):
        assert published(cluster, name), f"no CSIStorageCapacity for {name}"

    too_big = -(-(offered + (1 << 30)) // (1 << 30))  # GiB, past the offer
    cluster.apply(claim("csi-huge", size=f"{too_big}Gi", storage_class=DELETE_CLASS),
                  claim_pod("csi-huge-pod", "echo never", "csi-huge"))
    event = wait_for("the scheduler's FailedScheduling for csi-huge-pod",
                     lambda: next((e for e in events(cluster, "Pod", "csi-huge-pod")
                                   if e["reason"] == "FailedScheduling"), None), 60,
                     on_timeout=lambda: describe(cluster, "pod", "csi-huge-pod"))
    assert "did not have enough free storage" in event["message"], event["message"]
    time.sleep(3)
    assert cluster.get("pvc", "csi-huge")["status"]["phase"] == "Pending"
    assert cluster.get("pod", "csi-huge-pod")["status"]["phase"] == "Pending"
    assert not cluster.get("pvc", "csi-huge")["spec"].get("volumeName")
    claim_events = events(cluster, "PersistentVolumeClaim", "csi-huge")
    assert "ProvisioningSucceeded" not in [e["reason"] for e in claim_events], claim_events
    assert not [p for p in cluster.data_root.glob("volumes/*.img") if p.stat().st_size >= too_big << 30]
    cluster.kubectl("delete", "pod", "csi-huge-pod", "--wait=false")
    cluster.kubectl("delete", "pvc", "csi-huge", "--wait=false")


def test_the_plugin_killed_and_restarted_under_running_pods(csi: Cluster) -> None:
    cluster = csi
    cluster.apply(claim("csi-steady", size="64Mi", storage_class=DELETE_CLASS),
                  claim_pod("csi-steady-pod", TICK_SCRIPT, "csi-steady"))
    wait_claim_bound(cluster, "csi-steady")
    volume = volume_of(bound_pv(cluster, "csi-steady"))
    wait_for("the pod's first ticks", lambda: ticks(cluster, volume) > 2, 120,
             on_timeout=lambda: describe(cluster, "pod", "csi-steady-pod"))

    plugin = cluster.procs["csi"]
    os.kill(plugin.pid, signal.SIGKILL)
    plugin.wait(10)
    # Without its plugin the volume stays mounted and the pod keeps writing to it.
    before = ticks(cluster, volume)
    wait_for("ticks while the plugin is down", lambda: ticks(cluster, volume) >= before + 4, 30)
    assert cluster.volume_mounts(volume)

    start_plugin(cluster)
    before = ticks(cluster, volume)
    wait_for("ticks after the restart", lambda: ticks(cluster, volume) >= before + 2, 30)
    # The next operations: a new claim's volume, then the old pod's teardown and deletion. The
    # provisioner finds its connection gone at its next call and exits; restarted, it goes on.
    cluster.apply(claim("csi-after", size="64Mi", storage_class=DELETE_CLASS),
                  claim_pod("csi-after-pod", "echo after > /data/a && echo READ:$(cat /data/a)", "csi-after"))
    restarted: list[str] = []
    wait_for("claim csi-after to bind", lambda: restarted.extend(restart_exited_sidecars(cluster))
             or cluster.get("pvc", "csi-after").get("status", {}).get("phase") == "Bound", 120,
             on_timeout=lambda: describe(cluster, "pvc", "csi-after") + provisioner_log(cluster))
    print(f"\nrestarted after the plugin's restart: {restarted}")
    wait_log(cluster, "csi-after-pod", "READ:after")
    after = volume_of(bound_pv(cluster, "csi-after"))
    pairs = (("csi-steady-pod", "csi-steady", volume), ("csi-after-pod", "csi-after", after))
    for pod_name, claim_name, vol in pairs:
        pv_name = cluster.get("pvc", claim_name)["spec"]["volumeName"]
        release_pod(cluster, pod_name, vol)
        cluster.kubectl("delete", "pvc", claim_name, "--wait=false")
        wait_for(f"volume {vol} to be deleted",
                 lambda pv_name=pv_name, vol=vol: pv_gone(cluster, pv_name)
                 and not backing(cluster, vol).exists(),
                 120, on_timeout=lambda: provisioner_log(cluster) + cluster.log_tail("csi"))


def test_a_kubelet_restart_keeps_a_csi_volume_in_use_and_tears_down_a_pod_deleted_meanwhile(
        csi: Cluster) -> None:
    cluster = csi
    cluster.apply(claim("csi-up", size="64Mi", storage_class=DELETE_CLASS),
                  claim("csi-left", size="64Mi", storage_class=DELETE_CLASS),
                  claim_pod("csi-up-pod", f"echo before > /data/message && sync\n{TICK_SCRIPT}", "csi-up"),
                  claim_pod("csi-left-pod", "echo left > /data/l && sync && echo WROTE", "csi-left"))
    wait_claim_bound(cluster, "csi-up")
    wait_claim_bound(cluster, "csi-left")
    kept, left = volume_of(bound_pv(cluster, "csi-up")), volume_of(bound_pv(cluster, "csi-left"))
    wait_for("the pod's first ticks", lambda: ticks(cluster, kept) > 2, 120,
             on_timeout=lambda: node_logs(cluster))
    wait_log(cluster, "csi-left-pod", "WROTE")
    mounts = {vol: sorted(cluster.volume_mounts(vol)) for vol in (kept, left)}
    loops = {vol: volume_loops(cluster, vol) for vol in (kept, left)}
    records = {vol: target_records(cluster, vol) for vol in (kept, left)}
    # The staging dir and the pod's dir of each: mounted, one loop device, both recorded.
    assert all(len(mounts[vol]) == 2 and len(loops[vol]) == 1 and records[vol] == mounts[vol]
               for vol in (kept, left)), (mounts, loops, records)
    mark = plugin_log_mark(cluster)

    cluster.restart_kubelet()
    pv_name = cluster.get("pvc", "csi-up")["spec"]["volumeName"]
    wait_for("the restarted kubelet to confirm the running pod's volume",
             lambda: cluster.setup_succeeded(pv_name) in cluster.current_log("kubelet"), 120,
             on_timeout=lambda: node_logs(cluster))
    before = ticks(cluster, kept)
    wait_for("ticks after the kubelet's restart", lambda: ticks(cluster, kept) >= before + 2, 30)
    assert sorted(cluster.volume_mounts(kept)) == mounts[kept]
    assert volume_loops(cluster, kept) == loops[kept]
    # What the restarted kubelet asked again (stage and publish of a volume set up already)
    # succeeded without a second mount.
    calls = plugin_calls(cluster, mark, kept)
    print(f"\nthe plugin's calls for {kept} after the kubelet's restart: {calls}")
    assert not plugin_failures(cluster, mark, kept), calls

    cluster.stop_kubelet()
    delete_pod(cluster, "csi-left-pod")
    time.sleep(3)
    # Nobody is there to tear the volume down: it stays mounted until the kubelet is back.
    assert sorted(cluster.volume_mounts(left)) == mounts[left]
    cluster.restart_kubelet()
    wait_for(f"volume {left} to be unpublished, unstaged and its loop device released",
             lambda: released(cluster, left), 120, on_timeout=lambda: node_logs(cluster))
    calls = plugin_calls(cluster, mark, left)
    assert "NodeUnpublishVolume OK" in calls and "NodeUnstageVolume OK" in calls, calls
    assert not plugin_failures(cluster, mark, left), calls
    assert not target_records(cluster, left) and backing(cluster, left).exists()
    # The running pod kept its volume through both restarts.
    assert sorted(cluster.volume_mounts(kept)) == mounts[kept]
    before = ticks(cluster, kept)
    wait_for("ticks after the second restart", lambda: ticks(cluster, kept) >= before + 2, 30)
    assert file_in_volume(cluster, kept, "message") == "before\n"

    release_pod(cluster, "csi-up-pod", kept)
    assert not target_records(cluster, kept)
    delete_claims(cluster, ("csi-up", kept), ("csi-left", left))


# A block pod's first start writes the bytes; a later start finds them (KEPT) or says it did not.
BOOT_BLOCK_SCRIPT = ('v=$(dd if=/dev/xvda bs=10 count=1 2>/dev/null | tr -d "\\000")\n'
                     'if [ "$v" = boot-bytes ]; then echo KEPT:$v; elif [ -z "$v" ]; then '
                     'echo boot-bytes | dd of=/dev/xvda bs=512 conv=sync 2>/dev/null && sync && echo FRESH; '
                     'else echo LOST:$v; fi')


def test_after_a_simulated_reboot_csi_pods_come_back_with_their_data(csi: Cluster) -> None:
    cluster = csi
    cluster.apply(claim("csi-boot", size="64Mi", storage_class=DELETE_CLASS),
                  block_claim("csi-boot-blk", DELETE_CLASS),
                  # Each start of the container appends a line: the second start must see the first's.
                  claim_pod("csi-boot-pod", "echo started >> /data/starts && sync", "csi-boot"),
                  block_pod("csi-boot-blkpod", BOOT_BLOCK_SCRIPT, "csi-boot-blk"))
    wait_claim_bound(cluster, "csi-boot")
    wait_claim_bound(cluster, "csi-boot-blk")
    fs, blk = volume_of(bound_pv(cluster, "csi-boot")), volume_of(bound_pv(cluster, "csi-boot-blk"))
    assert wait_file(cluster, fs, "starts") == "started\n"
    wait_log(cluster, "csi-boot-blkpod", "FRESH")
    records = {vol: target_records(cluster, vol) for vol in (fs, blk)}
    assert all(len(records[vol]) == 2 for vol in (fs, blk)), records
    print(f"\nloop devices over the volumes' own: {cluster.stacked_loops()}")
    mark = plugin_log_mark(cluster)

    # Power off: the plugin dies with the node, every mount and loop device goes.
    plugin = cluster.procs["csi"]
    os.kill(plugin.pid, signal.SIGKILL)
    plugin.wait(10)
    cluster.simulate_reboot()
    assert not cluster.mounts(cluster.kubelet_root)
    assert not volume_loops(cluster, fs) and not volume_loops(cluster, blk) and not cluster.stacked_loops()
    # The plugin's records are on disk and outlive the power cycle: stale until it is back.
    assert {vol: target_records(cluster, vol) for vol in (fs, blk)} == records

    start_plugin(cluster)
    restarted = restart_exited_sidecars(cluster)
    print(f"\nrestarted after the reboot: {restarted}")
    starts = wait_for("the pod to start again on its volume",
                      lambda: (t := file_in_volume(cluster, fs, "starts")).count("started") == 2 and t,
                      180, on_timeout=lambda: describe(cluster, "pod", "csi-boot-pod") + node_logs(cluster))
    assert starts == "started\nstarted\n"
    log = wait_log(cluster, "csi-boot-blkpod", "KEPT:", timeout=180)
    assert "KEPT:boot-bytes" in log, log
    for vol in (fs, blk):
        calls = plugin_calls(cluster, mark, vol)
        print(f"the plugin's calls for {vol} after the reboot: {calls}")
        assert "NodeStageVolume OK" in calls and "NodePublishVolume OK" in calls, calls
        assert not plugin_failures(cluster, mark, vol), calls
        assert len(volume_loops(cluster, vol)) == 1, volume_loops(cluster, vol)
    assert sorted(cluster.volume_mounts(fs)) == records[fs] == target_records(cluster, fs)

    for pod_name, vol in (("csi-boot-pod", fs), ("csi-boot-blkpod", blk)):
        delete_pod(cluster, pod_name)
        wait_for(f"volume {vol} to be released", lambda vol=vol: released(cluster, vol), 120,
                 on_timeout=lambda: node_logs(cluster))
        assert not target_records(cluster, vol)
    assert not cluster.stacked_loops()
    delete_claims(cluster, ("csi-boot", fs), ("csi-boot-blk", blk))


def test_a_snapshot_of_a_running_pods_claim_restores_into_a_new_claim(csi: Cluster) -> None:
    cluster = csi
    bin_dir = sidecars.build()
    install_snapshot_crds(cluster, bin_dir)
    cluster.kubectl("apply", "-f", str(CSI_DIR / "snapshotclass.yaml"))
    running = [start_sidecar(cluster, name, bin_dir) for name in ("snapshot-controller", "csi-snapshotter")]
    try:
        cluster.apply(claim("csi-snapsrc", size="64Mi", storage_class=DELETE_CLASS),
                      claim_pod("csi-snapsrc-pod",
                                f"echo snap-bytes > /data/s && sync && echo WROTE\n{TICK_SCRIPT}",
                                "csi-snapsrc"))
        wait_log(cluster, "csi-snapsrc-pod", "WROTE")
        cluster.apply(snapshot("csi-snap", "csi-snapsrc"))
        wait_for("VolumeSnapshot csi-snap to be readyToUse",
                 lambda: (cluster.get("volumesnapshot", "csi-snap").get("status") or {}).get("readyToUse"),
                 120, on_timeout=lambda: describe(cluster, "volumesnapshot", "csi-snap")
                 + sidecars.collect_logs(running, 40) + cluster.log_tail("csi"))
        content = cluster.get("volumesnapshot", "csi-snap")["status"]["boundVolumeSnapshotContentName"]
        cluster.apply(restored_claim("csi-restored", "csi-snap", DELETE_CLASS),
                      claim_pod("csi-restored-pod", "echo READ:$(cat /data/s)", "csi-restored"))
        wait_log(cluster, "csi-restored-pod", "READ:snap-bytes")
        source = volume_of(bound_pv(cluster, "csi-snapsrc"))
        restored = volume_of(bound_pv(cluster, "csi-restored"))
        assert restored != source and backing(cluster, restored).exists()
        for pod_name, vol in (("csi-restored-pod", restored), ("csi-snapsrc-pod", source)):
            release_pod(cluster, pod_name, vol)
        cluster.kubectl("delete", "volumesnapshot", "csi-snap", "--wait=false")
        wait_for(f"VolumeSnapshotContent {content} to be deleted",
                 lambda: not cluster.kubectl("get", "volumesnapshotcontent", content, "--ignore-not-found",
                                             "-o", "name"), 120,
                 on_timeout=lambda: describe(cluster, "volumesnapshotcontent", content)
                 + sidecars.collect_logs(running, 40))
        for claim_name, vol in (("csi-restored", restored), ("csi-snapsrc", source)):
            cluster.kubectl("delete", "pvc", claim_name, "--wait=false")
            wait_for(f"volume {vol} to be deleted", lambda vol=vol: not backing(cluster, vol).exists(), 120,
                     on_timeout=lambda: provisioner_log(cluster) + cluster.log_tail("csi"))
    finally:
        print("\n" + sidecars.collect_logs(running, 40))
        sidecars.stop_all(running)


def test_a_clone_of_a_claim_holds_its_bytes_and_is_a_volume_of_its_own(csi: Cluster) -> None:
    cluster = csi
    cluster.apply(claim("csi-clonesrc", size="64Mi", storage_class=DELETE_CLASS),
                  claim_pod("csi-clonesrc-pod", "echo clone-bytes > /data/c && sync && echo WROTE\n"
                            + TICK_SCRIPT, "csi-clonesrc"))
    wait_log(cluster, "csi-clonesrc-pod", "WROTE")
    source = volume_of(bound_pv(cluster, "csi-clonesrc"))
    cluster.apply(clone_claim("csi-clone", "csi-clonesrc", DELETE_CLASS),
                  claim_pod("csi-clone-pod", "echo READ:$(cat /data/c) && echo mine > /data/mine && sync "
                            "&& echo WROTE", "csi-clone"))
    wait_claim_bound(cluster, "csi-clone")
    log = wait_log(cluster, "csi-clone-pod", "WROTE")
    assert "READ:clone-bytes" in log, log
    clone = volume_of(bound_pv(cluster, "csi-clone"))
    assert clone != source
    assert backing(cluster, clone).stat().st_ino != backing(cluster, source).stat().st_ino
    # Separate volumes: the clone's write is not in the source, the source's later ticks are
    # not in the clone.
    assert file_in_volume(cluster, clone, "mine") == "mine\n"
    assert file_in_volume(cluster, source, "mine") == ""
    before = ticks(cluster, source)
    wait_for("the source pod's ticks", lambda: ticks(cluster, source) >= before + 2, 30)
    assert ticks(cluster, clone) <= before
    for pod_name, vol in (("csi-clone-pod", clone), ("csi-clonesrc-pod", source)):
        release_pod(cluster, pod_name, vol)
    delete_claims(cluster, ("csi-clone", clone), ("csi-clonesrc", source))
