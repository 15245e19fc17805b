"""The node agent's reclaim decision, against recorded PVs and nodes."""

from __future__ import annotations

import pytest

from flexvol.provisioning import reclaim
from tests.helpers.fakekube import fixture

ME = "flexvol/loop"
VOLUME = "pvc-5b0f2c8e-3d5a-4a57-9a0e-0c6a2f3f1e11"


def decide(pv: dict, node_name: str = "worker-1", node: dict | None = None) -> reclaim.ReclaimDecision:
    return reclaim.decide_reclaim(pv, node_name, ME, node if node is not None else fixture("node-worker-2"))


def test_released_delete_pv_of_this_node_is_deleted() -> None:
    decision = decide(fixture("pv-released-delete"))
    assert decision.action == reclaim.DELETE
    assert decision.volume_id == VOLUME


def test_retain_keeps_volume_and_says_so() -> None:
    pv = fixture("pv-released-delete")
    pv["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
    decision = decide(pv)
    assert decision.action == reclaim.KEEP
    assert "policy Retain" in decision.message and "kept" in decision.message


@pytest.mark.parametrize("change", ["bound", "other-node", "other-provisioner", "not-annotated"])
def test_pvs_not_ours_to_reclaim_are_ignored(change: str) -> None:
    pv = fixture("pv-released-delete")
    node_name = "worker-1"
    if change == "bound":
        pv["status"]["phase"] = "Bound"
    elif change == "other-node":
        node_name = "worker-2"
    elif change == "other-provisioner":
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] = "rancher.io/local-path"
    else:
        pv["metadata"]["annotations"] = {}
    assert decide(pv, node_name).action == reclaim.IGNORE


@pytest.mark.parametrize("field", ["volumesInUse", "volumesAttached"])
def test_volume_the_node_still_lists_waits(field: str) -> None:
    pv = fixture("pv-released-delete")
    name = "pvc-0aa0aa0a-0000-4000-8000-000000000001"  # listed in both fields of worker-1
    pv["metadata"]["name"] = name
    pv["spec"]["flexVolume"]["options"]["volumeID"] = name
    node = fixture("node-worker-1")
    other = "volumesAttached" if field == "volumesInUse" else "volumesInUse"
    del node["status"][other]
    decision = decide(pv, node=node)
    assert decision.action == reclaim.WAIT
    assert field in decision.message


def test_unusable_volume_id_is_kept_not_guessed() -> None:
    pv = fixture("pv-released-delete")
    pv["spec"]["flexVolume"]["options"]["volumeID"] = "../etc"
    decision = decide(pv)
    assert decision.action == reclaim.KEEP
    assert "'volumeID' is invalid" in decision.message
