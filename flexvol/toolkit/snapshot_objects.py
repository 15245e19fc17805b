"""The Kubernetes objects that make a flexvol snapshot a claim's data source: a pre-provisioned
VolumeSnapshotContent whose snapshot handle is the snapshot's name (the id the CSI plugin gives
its snapshots too) and the VolumeSnapshot bound to it. FlexVolume volumes have no CSI
snapshotter, so `flexvol snapshot manifest` prints these for `kubectl apply -f -`."""

from __future__ import annotations

from flexvol.core.config import Config
from flexvol.core.errors import InvalidInput, Refused
from flexvol.core.snapshots import check_name, load_snapshot

API_VERSION = "snapshot.storage.k8s.io/v1"


def content_name(snapshot: str) -> str:
    return f"flexvol-{snapshot}"


def objects(config: Config, snapshot: str, namespace: str, name: str, driver: str) -> list[dict]:
    """The VolumeSnapshotContent and the VolumeSnapshot (`namespace`/`name`) for ready snapshot
    `snapshot` of this node; Refused when there is none."""
    check_name(snapshot)
    if not namespace or not name:
        raise InvalidInput("a VolumeSnapshot needs a namespace and a name", "pass --namespace and --name")
    record = load_snapshot(config, snapshot)
    if record is None or not record.ready:
        raise Refused(f"snapshot {snapshot} does not exist", "see 'flexvol snapshot ls'")
    if record.block:
        raise Refused(f"snapshot {snapshot} is of a raw block volume; FlexVolume claims are filesystems")
    content = {
        "apiVersion": API_VERSION,
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": content_name(snapshot)},
        "spec": {
            "driver": driver,
            # Retain: deleting the Kubernetes objects never deletes the snapshot on the node
            # (`flexvol snapshot delete` does).
            "deletionPolicy": "Retain",
            "source": {"snapshotHandle": snapshot},
            "volumeSnapshotRef": {"namespace": namespace, "name": name},
        },
    }
    volume_snapshot = {
        "apiVersion": API_VERSION,
        "kind": "VolumeSnapshot",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"source": {"volumeSnapshotContentName": content_name(snapshot)}},
    }
    return [content, volume_snapshot]
