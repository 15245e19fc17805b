"""Scenario 6, secrets: calls carrying `kubernetes.io/secret/*` values (random markers) through
every verb, succeeding and failing; afterwards the markers appear nowhere: not in the data root
(records, journal, backing files), not in any reply, not in the mount table.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from tests.helpers.driver import options
from tests.reliability.harness import FIGURES, Harness, journal_tracebacks, leaks


def secret_options(volume_id: str, markers: list[str], *, broken: str = "", **extra: str) -> str:
    marker = f"mk{os.urandom(12).hex()}"
    markers.append(marker)
    encoded = base64.b64encode(marker.encode()).decode()
    markers.append(encoded)
    other = base64.b64encode(marker[::-1].encode()).decode()
    markers += [marker[::-1], other]
    secrets = {"kubernetes.io/secret/password": encoded, "kubernetes.io/secret/user": other}
    if broken == "base64":
        secrets["kubernetes.io/secret/password"] = marker + "!!"  # not base64: refused, never echoed
    body = json.loads(options(volume_id, size="48Mi", **extra))
    body.update(secrets)
    if broken == "size":
        body["size"] = "-1"
    if broken == "fs":
        body["kubernetes.io/fsType"] = "xfs"
    return json.dumps(body)


def test_secret_markers_appear_nowhere(make_harness) -> None:
    outputs: list[str] = []
    markers: list[str] = []
    calls = 0
    for attach in (False, True):
        harness: Harness = make_harness("secrets", attach=attach)

        def call(*args: str, status: str = "Success", harness: Harness = harness) -> None:
            nonlocal calls
            outcome = harness.must(*args, status=status)
            outputs.append(outcome.output)
            calls += 1

        pod, device_dir = harness.dir("pod"), harness.dir("global")
        for broken in ("base64", "size"):
            opts = secret_options("v1", markers, broken=broken)
            call("mount", pod, opts, status="Failure")
            call("expandvolume", opts, "/ctrl", "64Mi", "48Mi", status="Failure")
            call("waitforattach", "flexvol:v1", opts, status="Failure")
        call("getvolumename", secret_options("v1", markers), status="Not supported")
        if attach:
            call("attach", secret_options("v1", markers), "node1")
            call("isattached", secret_options("v1", markers), "node1")
            call("attach", secret_options("v1", markers, broken="base64"), "node1", status="Failure")
            call("waitforattach", "flexvol:v1", secret_options("v1", markers))
            call("mountdevice", device_dir, "flexvol:v1", secret_options("v1", markers))
            call("mountdevice", harness.dir("g2"), "flexvol:v1", secret_options("v1", markers, broken="fs"),
                 status="Failure")
        call("mount", pod, secret_options("v1", markers))
        Path(pod, "data").write_text("plain data")
        call("mount", harness.dir("bad"), secret_options("v1", markers, broken="fs"), status="Failure")
        call("expandvolume", secret_options("v1", markers), "/ctrl", "64Mi", "48Mi")
        call("unmount", pod)
        if attach:
            call("unmountdevice", device_dir)
        # offline: online ext4 growth needs CAP_SYS_RESOURCE, which some test machines drop
        call("expandfs", secret_options("v1", markers), "flexvol:v1", pod, "64Mi", "48Mi")
        call("expandfs", secret_options("v1", markers, broken="base64"), "flexvol:v1", pod, "80Mi", "64Mi",
             status="Failure")
        if attach:
            call("detach", "pv-v1", "node1")
        assert not leaks(harness) and not journal_tracebacks(harness)

    found = []
    everything = "\n".join(outputs)
    for marker in markers:
        if marker in everything:
            found.append(f"reply: {marker}")
    mounts = Path("/proc/self/mountinfo").read_bytes()
    searched = 0
    for harness in make_harness.made:
        for path in harness.root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                searched += 1
                for marker in markers:
                    if marker.encode() in data:
                        found.append(f"{path}: {marker}")
    for marker in markers:
        if marker.encode() in mounts:
            found.append(f"mountinfo: {marker}")
    FIGURES.add("secrets", "calls carrying secrets", calls)
    FIGURES.add("secrets", "markers", len(markers))
    FIGURES.add("secrets", "files searched", searched)
    FIGURES.add("secrets", "secret markers found", len(found))
    assert not found, found
