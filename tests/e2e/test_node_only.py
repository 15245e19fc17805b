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
                    on_timeout=lambda: node.log_tail("kubelet"))
    assert text == "written by the first pod\n"
    # The volume the container saw is our loop device, mounted under the pod's volume dir.
    [mount_point] = node.volume_mounts(volume)
    assert "/volumes/flexvol~loop/data" in mount_point
    assert "/pods/" in mount_point
    # init answers without writing to the journal; the kubelet logs that it probed the driver.
    assert 'Loaded volume plugin "flexvol/loop"' in (node.logs / "kubelet.log").read_text()
    assert node.verbs(volume) == ["mount"]

    writer.unlink()
    wait_for("the volume to be unmounted and its loop device released",
             lambda: released(node, volume), 120, on_timeout=lambda: node.log_tail("kubelet"))
    calls = [c for c in node.calls() if c["verb"] == "unmount"]
    assert calls and calls[-1]["status"] == "Success"
    assert Path(node.data_root / "volumes" / f"{volume}.img").exists()

    reader = put_manifest(node, "reader", inline_pod(
        "reader", 'cat /data/message > /data/seen-by-second-pod', volume))
    seen = wait_for("the second pod to read the first pod's data",
                    lambda: file_in_volume(node, volume, "seen-by-second-pod"), 180,
                    on_timeout=lambda: node.log_tail("kubelet"))
    assert seen == "written by the first pod\n"
    reader.unlink()
    wait_for("the second pod's volume to be released", lambda: released(node, volume), 120,
             on_timeout=lambda: node.log_tail("kubelet"))
    assert [c["status"] for c in node.calls() if c["verb"] in ("mount", "unmount")] == ["Success"] * 4
