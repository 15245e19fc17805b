"""Claims with a data source: which snapshot or volume a new volume is copied from, and on
which node.

A flexvol volume is one node's file, so its copy is made on that node: a clone on the node
of its source claim's volume, a restore on the node whose agent lists the snapshot as ready
(its NodeCapacity object, capacity.ready_snapshots). The provisioner only writes the PV, with
the source as a flexVolume option; the driver makes the copy at the volume's first mount
(operations.mount, restore.create_from), so a killed provisioner or a killed copy leaves no
half volume: the PV is one name per claim, and the core discards an unfinished copy.

Snapshot handles: a VolumeSnapshotContent's snapshot handle is the flexvol snapshot's name,
the same id the CSI plugin gives its snapshots, so one snapshot has one handle whichever
front end reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexvol.core.errors import InvalidInput
from flexvol.core.options import FROM_SNAPSHOT, FROM_VOLUME, VOLUME_ID_FIRST, VOLUME_ID_REST
from flexvol.core.quantity import human_bytes
from flexvol.provisioning import claims, names
from flexvol.provisioning.cluster import Cluster

SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
SNAPSHOT_VERSION = "v1"
CLAIM_KIND = "PersistentVolumeClaim"
SNAPSHOT_KIND = "VolumeSnapshot"


class SourceProblem(Exception):
    """The data source cannot be copied (yet): the claim's event says why; nothing is made."""


class MissingApi(Exception):
    """The cluster serves no such resource (the snapshot CRDs are not installed)."""


@dataclass(frozen=True)
class DataSource:
    kind: str       # CLAIM_KIND or SNAPSHOT_KIND
    name: str


@dataclass(frozen=True)
class Source:
    """A resolved data source: what the driver copies, where, and what it holds."""

    node: str
    option: str         # FROM_SNAPSHOT or FROM_VOLUME
    name: str           # the snapshot's name or the source volume's id
    size_bytes: int
    fs_type: str
    what: str           # for events: "snapshot s1 (VolumeSnapshot ns/snap)"

    @property
    def driver_options(self) -> dict[str, str]:
        return {self.option: self.name}


def requested(claim: dict) -> DataSource | None:
    """The claim's data source (dataSourceRef first, which may carry a namespace), checked
    for a kind flexvol can copy; InvalidInput for any other."""
    spec = claim.get("spec") or {}
    ref = spec.get("dataSourceRef") or spec.get("dataSource")
    if not ref:
        return None
    key = claims.claim_key(claim)
    kind, group, name = ref.get("kind") or "", ref.get("apiGroup") or "", ref.get("name") or ""
    namespace = ref.get("namespace") or ""
    own = (claim.get("metadata") or {}).get("namespace", "")
    if namespace and namespace != own:
        raise InvalidInput(f"claim {key} asks for a data source in namespace {namespace}; flexvol "
                           "copies only from the claim's own namespace",
                           "use a snapshot or claim in the same namespace")
    if not name:
        raise InvalidInput(f"claim {key} has a data source without a name", "set dataSource.name")
    if kind == CLAIM_KIND and not group:
        return DataSource(CLAIM_KIND, name)
    if kind == SNAPSHOT_KIND and group == SNAPSHOT_GROUP:
        return DataSource(SNAPSHOT_KIND, name)
    raise InvalidInput(f"claim {key} asks for data source {kind or '(no kind)'} "
                       f"{(group + ' ') if group else ''}{name}; flexvol restores VolumeSnapshots "
                       f"({SNAPSHOT_GROUP}) and clones PersistentVolumeClaims only",
                       "use one of those, or remove spec.dataSource")


def resolve(cluster: Cluster, claim: dict, source: DataSource, pvs: list[dict],
            provisioner: str) -> Source:
    """Where and what to copy for `claim`; SourceProblem when it cannot be (yet)."""
    namespace = claim["metadata"].get("namespace", "")
    if source.kind == CLAIM_KIND:
        return _claim_source(cluster, namespace, source.name, pvs, provisioner)
    return _snapshot_source(cluster, namespace, source.name)


def _claim_source(cluster: Cluster, namespace: str, name: str, pvs: list[dict],
                  provisioner: str) -> Source:
    label = f"claim {namespace}/{name}"
    other = cluster.get_claim(namespace, name)
    if other is None:
        raise SourceProblem(f"the data source {label} does not exist")
    pv_name = (other.get("spec") or {}).get("volumeName")
    if not pv_name or (other.get("status") or {}).get("phase") != "Bound":
        raise SourceProblem(f"the data source {label} is not Bound yet; retried once it is")
    pv = next((item for item in pvs if item["metadata"]["name"] == pv_name), None)
    if pv is None:
        raise SourceProblem(f"the data source {label} is bound to PersistentVolume {pv_name}, "
                            "which does not exist")
    flex = (pv.get("spec") or {}).get("flexVolume") or {}
    volume_id, node = claims.volume_id_of_pv(pv), claims.node_of_pv(pv)
    if flex.get("driver") != provisioner or not volume_id or not node:
        raise SourceProblem(f"the data source {label} is bound to PersistentVolume {pv_name}, which "
                            f"is not a {provisioner} FlexVolume volume this provisioner placed on a "
                            "node: only those can be cloned")
    made = ((cluster.get_capacity(node) or {}).get("volumes") or {}).get(volume_id)
    if made is None:
        raise SourceProblem(f"the volume of the data source {label} ({volume_id}) has not been "
                            f"made on {node} yet (no pod has mounted it): there is nothing to copy")
    return Source(node, FROM_VOLUME, volume_id, int(made), flex.get("fsType") or "ext4",
                  f"volume {volume_id} of {label}")


def _snapshot_source(cluster: Cluster, namespace: str, name: str) -> Source:
    label = f"VolumeSnapshot {namespace}/{name}"
    try:
        snapshot = cluster.get_volume_snapshot(namespace, name)
        content_name = _bound_content(snapshot, label) if snapshot else ""
        content = cluster.get_volume_snapshot_content(content_name) if content_name else None
    except MissingApi:
        raise SourceProblem(f"the cluster serves no {SNAPSHOT_GROUP}/{SNAPSHOT_VERSION} API: the "
                            "VolumeSnapshot CRDs are not installed (see README, Snapshots)") from None
    if snapshot is None:
        raise SourceProblem(f"the data source {label} does not exist")
    if content is None:
        raise SourceProblem(f"{label} is bound to VolumeSnapshotContent {content_name}, which does "
                            "not exist")
    ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
    uid = snapshot["metadata"].get("uid")
    if ref.get("name") != name or ref.get("namespace") != namespace or \
            (ref.get("uid") and uid and ref["uid"] != uid):
        raise SourceProblem(f"VolumeSnapshotContent {content_name} is bound to VolumeSnapshot "
                            f"{ref.get('namespace')}/{ref.get('name')}, not to {label}")
    handle = (content.get("status") or {}).get("snapshotHandle") or \
        (((content.get("spec") or {}).get("source") or {}).get("snapshotHandle")) or ""
    if not handle:
        raise SourceProblem(f"VolumeSnapshotContent {content_name} names no snapshot handle")
    if len(handle) > 63 or handle[0] not in VOLUME_ID_FIRST or any(c not in VOLUME_ID_REST for c in handle):
        raise SourceProblem(f"VolumeSnapshotContent {content_name} has snapshot handle "
                            f"{handle[:80]!r}, which is no flexvol snapshot name")
    holders = {item["metadata"]["name"]: (item.get("snapshots") or {})[handle]
               for item in cluster.list_capacities() if handle in (item.get("snapshots") or {})}
    what = f"snapshot {handle} ({label})"
    if not holders:
        raise SourceProblem(f"{what} is not ready on any node this provisioner serves: no node's "
                            "agent lists it ('flexvol snapshot ls' on the node shows ready ones)")
    if len(holders) > 1:
        raise SourceProblem(f"{what} exists on several nodes ({', '.join(sorted(holders))}); "
                            "cannot tell which one is meant")
    [(node, entry)] = holders.items()
    if entry.get("block") or not entry.get("fsType"):
        raise SourceProblem(f"{what} on {node} is of a raw block volume; FlexVolume claims are "
                            "filesystems")
    return Source(node, FROM_SNAPSHOT, handle, int(entry.get("sizeBytes") or 0), entry["fsType"], what)


def _bound_content(snapshot: dict, label: str) -> str:
    """The content a VolumeSnapshot is bound to: its status says so once the snapshot
    controller bound them; a pre-provisioned one names it in spec.source."""
    bound = (snapshot.get("status") or {}).get("boundVolumeSnapshotContentName") or \
        ((snapshot.get("spec") or {}).get("source") or {}).get("volumeSnapshotContentName")
    if not bound:
        raise SourceProblem(f"{label} is bound to no VolumeSnapshotContent; FlexVolume volumes have "
                            "no CSI snapshotter: take the snapshot with 'flexvol snapshot create' "
                            "and apply what 'flexvol snapshot manifest' prints")
    return bound


def check_fits(source: Source, request: claims.VolumeRequest, class_fs_type: str,
               selected_node: str | None) -> None:
    """A copy is at least its source's size, keeps its filesystem, and is made on its node."""
    if request.size_bytes < source.size_bytes:
        raise SourceProblem(f"the claim asks for {request.size} but {source.what} holds "
                            f"{human_bytes(source.size_bytes)}: ask at least that much")
    if class_fs_type and class_fs_type != source.fs_type:
        raise SourceProblem(f"StorageClass {request.class_name} asks for {class_fs_type}, but "
                            f"{source.what} holds {source.fs_type}: a copy keeps its source's "
                            "filesystem (use a class without fsType, or one of the same)")
    if selected_node and selected_node != source.node:
        raise SourceProblem(f"the scheduler chose node {selected_node} for the claim's pod, but "
                            f"{source.what} is on {source.node} and a copy is made there only: "
                            f"schedule the pod on {source.node} (nodeSelector "
                            f"{names.HOSTNAME_LABEL}) or use an Immediate StorageClass")
