"""A FakeCluster with the parts of kube-controller-manager a PV migration meets, following
Kubernetes' own code (pkg/controller/volume/persistentvolume/pv_controller.go syncVolume and
syncBoundClaim; pkg/controller/volume/pvprotection):

- deleting a PV that carries kubernetes.io/pv-protection only sets its deletionTimestamp; the
  finalizer goes (and the PV with it) once its phase is not Bound;
- a PV whose claimRef UID is not its claim's becomes Released; one whose claimRef UID is the
  claim's, with the claim's volumeName naming it, is Bound;
- a claim with pv.kubernetes.io/bind-completed whose PV is missing or names another UID is
  Lost; once the PV names its UID again it is Bound (at the controller's next claim sync).

`sync()` is one pass of those controllers; tests call it from the migrator's sleep.
"""

from __future__ import annotations

import copy

from flexvol.provisioning.cluster import Conflict, NotFound
from tests.helpers.fakekube import FakeCluster, fixture

PROTECTION = "kubernetes.io/pv-protection"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"


class BinderCluster(FakeCluster):
    def __init__(self, auto_sync: bool = False) -> None:
        super().__init__()
        # The controllers run before every read, as if they were always quicker than the caller.
        self.auto_sync = auto_sync

    def get_pv(self, name: str) -> dict | None:
        if self.auto_sync:
            self.sync()
        return super().get_pv(name)

    def get_claim(self, namespace: str, name: str) -> dict | None:
        if self.auto_sync:
            self.sync()
        return super().get_claim(namespace, name)

    def delete_pv(self, name: str, uid: str) -> None:
        self._check("delete_pv")
        pv = self.pvs.get(name)
        if pv is None:
            raise NotFound(f"persistentvolumes {name!r} not found")
        if uid and pv["metadata"]["uid"] != uid:
            raise Conflict(f"precondition failed: uid {uid} of {name}")
        self.writes.append(f"delete pv {name}")
        if PROTECTION in (pv["metadata"].get("finalizers") or []):
            pv["metadata"].setdefault("deletionTimestamp", "2026-12-06T14:00:00Z")
            return
        del self.pvs[name]

    def create_pv(self, body: dict) -> dict:
        body = copy.deepcopy(body)
        body.setdefault("metadata", {}).setdefault("finalizers", [PROTECTION])
        return super().create_pv(body)

    def sync(self, claims: bool = True) -> None:
        """One pass of the PV controller and the pv-protection controller (without `claims`,
        the claims' sync has not come round yet)."""
        for name, pv in list(self.pvs.items()):
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            claim = self.claims.get((ref.get("namespace"), ref.get("name"))) if ref else None
            status = pv.setdefault("status", {})
            if not ref:
                status["phase"] = "Available"
            elif claim is None or claim["metadata"]["uid"] != ref.get("uid"):
                status["phase"] = "Released"
            elif claim["spec"].get("volumeName") == name:
                status["phase"] = "Bound"
            meta = pv["metadata"]
            if meta.get("deletionTimestamp") and status.get("phase") != "Bound":
                del self.pvs[name]
        for claim in self.claims.values() if claims else ():
            if BIND_COMPLETED not in (claim["metadata"].get("annotations") or {}):
                continue
            pv = self.pvs.get(claim["spec"].get("volumeName", ""))
            ref = ((pv or {}).get("spec") or {}).get("claimRef") or {}
            bound = pv is not None and ref.get("uid") == claim["metadata"]["uid"]
            claim.setdefault("status", {})["phase"] = "Bound" if bound else "Lost"


def bound_pair(cluster: BinderCluster, volume_id: str, node: str = "worker-1") -> tuple[dict, dict]:
    """A Bound FlexVolume PV of the flexvol provisioner for `volume_id` and its Bound claim."""
    claim = fixture("claim-bound")
    pv = fixture("pv-released-delete")
    pv["metadata"]["name"] = claim["spec"]["volumeName"]
    pv["metadata"]["annotations"]["flexvol.io/node"] = node
    pv["spec"]["flexVolume"]["options"]["volumeID"] = volume_id
    pv["status"] = {"phase": "Bound"}
    stored_claim = cluster.put_claim(claim)
    pv["spec"]["claimRef"]["uid"] = stored_claim["metadata"]["uid"]
    return cluster.put_pv(pv), stored_claim


def csi_node(name: str = "worker-1") -> dict:
    node = fixture(f"node-{name}")
    node["metadata"]["labels"]["topology.flexvol.io/node"] = name
    return node
