"""Scenario 1: a standalone kubelet runs static pods with an inline flexVolume."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.e2e.harness import Cluster, wait_for
from tests.e2e.pods import inline_pod


def put_manifest(node: Cluster, name: str, pod: dict) -> Path:
    # Written beside, then renamed: the kubelet ignores dot-files and never reads half a file.
    path = node.manifests / f"{name}.json"
    temp = node.manifests / f".{name}.json"
    temp.write_text(json.dumps(pod))
    os.replace(temp, path)
    return path


def file_in_volume(node: Cluster, volume: str, name: str) -> str:
    for mount_point in node.volume_mounts(volume):
        path = Path(mount_point) / name
        if path.exists():
            return path.read_text()
    return ""


def released(node: Cluster, volume: str) -> bool:
    backing = str(node.data_root / "volumes" / f"{volume}.img")
    return not node.volume_mounts(volume) and backing not in node.loops().values()


def test_static_pod_data_survives_a_second_pod(node: Cluster) -> None:
    volume = "e2e-static"
    writer = put_manifest(node, "writer", inline_pod(
        "writer", 'echo "written by the first pod" > /data/message', volume))
    text = wait_for("the first pod to write into its volume",
                    lambda: file_in_volume(node, volume, "message"), 180,
                    on_timeout=node.errors_in_log)
    assert text == "written by the first pod\n"
    # The volume the container saw is our loop device, mounted under the pod's volume dir.
    [mount_point] = node.volume_mounts(volume)
    assert "/volumes/flexvol~loop/data" in mount_point
    assert "/pods/" in mount_point
    # init answers without writing to the journal; the kubelet logs that it probed the driver.
    assert node.plugin_loaded() in (node.logs / "kubelet.log").read_text()
    assert node.verbs(volume) == ["mount"]

    writer.unlink()
    wait_for("the volume to be unmounted and its loop device released",
             lambda: released(node, volume), 120, on_timeout=node.errors_in_log)
    calls = [c for c in node.calls() if c["verb"] == "unmount"]
    assert calls and calls[-1]["status"] == "Success"
    assert Path(node.data_root / "volumes" / f"{volume}.img").exists()

    reader = put_manifest(node, "reader", inline_pod(
        "reader", 'cat /data/message > /data/seen-by-second-pod', volume))
    seen = wait_for("the second pod to read the first pod's data",
                    lambda: file_in_volume(node, volume, "seen-by-second-pod"), 180,
                    on_timeout=node.errors_in_log)
    assert seen == "written by the first pod\n"
    reader.unlink()
    wait_for("the second pod's volume to be released", lambda: released(node, volume), 120,
             on_timeout=node.errors_in_log)
    assert [c["status"] for c in node.calls() if c["verb"] in ("mount", "unmount")] == ["Success"] * 4
    # A reply the kubelet could not use shows up only in its log (the pod may still run).
    assert not node.log_errors(needle="flexvol/loop"), node.errors_in_log()


def test_a_driver_that_writes_to_stderr_fails_with_the_kubelets_own_error(node: Cluster) -> None:
    # The failure scenario 1 exists to catch: the kubelet reads stdout and stderr together, so
    # one warning on stderr breaks the reply; its own error is what a failure shows.
    noisy_dir = node.plugin_dir / "flexvol~noisy"
    noisy_dir.mkdir()
    noisy = noisy_dir / ".noisy"
    noisy.write_text(f"""#!/bin/sh
if [ "$1" = mount ]; then echo "warning: this driver is noisy" >&2; fi
exec {node.plugin_dir}/flexvol~loop/loop "$@"
""")
    noisy.chmod(0o755)
    noisy.rename(noisy_dir / "noisy")
    pod = inline_pod("noisy", 'echo "never" > /data/message', "e2e-noisy")
    pod["spec"]["volumes"][0]["flexVolume"]["driver"] = "flexvol/noisy"
    manifest = put_manifest(node, "noisy", pod)
    error = wait_for("the kubelet to reject the noisy reply",
                     lambda: "Failed to unmarshal output for command: mount" in (e := node.errors_in_log(
                         needle="noisy")) and e, 60, on_timeout=node.errors_in_log)
    assert "warning: this driver is noisy" in error, error
    # The kubelet unmounts only a volume it has recorded as set up: a pod gone before its retry
    # (which finds the dir mounted and succeeds without calling the driver) would leave the
    # mount behind on 1.20 and 1.37 alike, so wait for that retry before removing the pod.
    wait_for("the kubelet to retry and find the noisy volume mounted",
             lambda: any("MountVolume.SetUp succeeded" in line and "flexvol/noisy/" in line
                         for line in (node.logs / "kubelet.log").read_text().splitlines()), 60,
             on_timeout=node.errors_in_log)
    manifest.unlink()
    wait_for("the noisy pod's volume to be released", lambda: released(node, "e2e-noisy"), 120,
             on_timeout=node.errors_in_log)
