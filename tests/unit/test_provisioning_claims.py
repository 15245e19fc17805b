"""Which claims the provisioner acts on and the PV it builds, against recorded API objects."""

from __future__ import annotations

import copy

import pytest

from flexvol.core import options as option_keys
from flexvol.core.options import parse_spec
from flexvol.provisioning import claims, names
from tests.helpers.fakekube import fixture

ME = "flexvol/loop"
UID = "5b0f2c8e-3d5a-4a57-9a0e-0c6a2f3f1e11"


def decide(claim: dict, storage_class: dict | None, existing: set[str] | None = None):
    return claims.decide_claim(claim, storage_class, ME, existing or set())


def with_spec(claim: dict, **spec: object) -> dict:
    claim = copy.deepcopy(claim)
    claim["spec"].update(spec)
    return claim


def test_unscheduled_claim_waits_for_kubernetes_to_hand_it_over() -> None:
    decision = decide(fixture("claim-wffc-unscheduled"), fixture("sc-wffc-delete"))
    assert decision.action == claims.WAIT
    assert "hand the claim to flexvol/loop" in decision.message


def test_handed_over_but_no_node_selected_waits_for_the_scheduler() -> None:
    claim = fixture("claim-wffc-selected")
    del claim["metadata"]["annotations"][names.SELECTED_NODE_ANNOTATION]
    decision = decide(claim, fixture("sc-wffc-delete"))
    assert decision.action == claims.WAIT
    assert "scheduler" in decision.message
    assert decision.selected_node is None


def test_selected_node_under_wait_for_first_consumer_provisions_there() -> None:
    decision = decide(fixture("claim-wffc-selected"), fixture("sc-wffc-delete"))
    assert decision.action == claims.PROVISION
    assert decision.selected_node == "worker-1"
    request = decision.request
    assert request is not None
    assert request.pv_name == request.volume_id == f"pvc-{UID}"
    assert (request.size, request.size_bytes) == ("1Gi", 1 << 30)
    assert request.fs_type == "ext4"
    assert (request.reclaim_policy, request.class_name) == ("Delete", "flexvol-local")
    assert request.access_modes == ("ReadWriteOnce",)


@pytest.mark.parametrize("annotation", names.STORAGE_PROVISIONER_ANNOTATIONS)
def test_either_storage_provisioner_annotation_hands_the_claim_over(annotation: str) -> None:
    claim = fixture("claim-immediate")
    claim["metadata"]["annotations"] = {annotation: ME}
    decision = decide(claim, fixture("sc-immediate-retain-xfs"))
    assert decision.action == claims.PROVISION
    assert decision.selected_node is None


def test_claim_handed_to_another_provisioner_is_ignored() -> None:
    claim = fixture("claim-wffc-selected")
    claim["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-provisioner"] = "other/thing"
    assert decide(claim, fixture("sc-wffc-delete")).action == claims.IGNORE


def test_claim_of_another_class_is_ignored() -> None:
    claim = with_spec(fixture("claim-wffc-unscheduled"), storageClassName="standard")
    assert decide(claim, fixture("sc-other")).action == claims.IGNORE


def test_beta_storage_class_annotation_names_the_class() -> None:
    claim = fixture("claim-wffc-selected")
    del claim["spec"]["storageClassName"]
    claim["metadata"]["annotations"][names.STORAGE_CLASS_ANNOTATION] = "flexvol-local"
    assert claims.claim_class_name(claim) == "flexvol-local"
    assert decide(claim, fixture("sc-wffc-delete")).action == claims.PROVISION


@pytest.mark.parametrize("change", ["bound", "deleting", "no-class"])
def test_claims_with_nothing_to_do_are_ignored(change: str) -> None:
    if change == "bound":
        claim = fixture("claim-bound")
    elif change == "deleting":
        claim = fixture("claim-wffc-selected")
        claim["metadata"]["deletionTimestamp"] = "2026-11-29T17:30:00Z"
    else:
        claim = with_spec(fixture("claim-wffc-selected"), storageClassName="")
    assert decide(claim, fixture("sc-wffc-delete")).action == claims.IGNORE


def test_existing_pv_means_already_provisioned() -> None:
    decision = decide(fixture("claim-wffc-selected"), fixture("sc-wffc-delete"), {f"pvc-{UID}"})
    assert decision.action == claims.IGNORE
    assert "exists already" in decision.message


def test_missing_class_is_refused_only_for_claims_handed_to_us() -> None:
    decision = decide(fixture("claim-wffc-selected"), None)
    assert decision.action == claims.REFUSE
    assert "StorageClass flexvol-local does not exist" in decision.message
    assert decide(fixture("claim-wffc-unscheduled"), None).action == claims.IGNORE


@pytest.mark.parametrize("mode", ["ReadWriteMany", "ReadOnlyMany"])
def test_multi_node_access_modes_are_refused_with_the_reason(mode: str) -> None:
    claim = with_spec(fixture("claim-wffc-selected"), accessModes=["ReadWriteOnce", mode])
    decision = decide(claim, fixture("sc-wffc-delete"))
    assert decision.action == claims.REFUSE
    assert decision.reason == "ProvisioningFailed"
    assert mode in decision.message
    assert "one node's loop device" in decision.message
    assert "use ReadWriteOnce" in decision.message


@pytest.mark.parametrize(("spec", "words"), [
    ({"volumeMode": "Block"}, "volumeMode Block"),
    ({"selector": {"matchLabels": {"disk": "fast"}}}, "selector"),
    ({"dataSource": {"kind": "ConfigMap", "name": "old"}}, "restores VolumeSnapshots"),
    ({"resources": {}}, "requests no storage"),
    ({"resources": {"requests": {"storage": "lots"}}}, "not a valid quantity"),
    ({"accessModes": []}, "no access mode"),
])
def test_claims_a_loop_device_cannot_serve_are_refused(spec: dict, words: str) -> None:
    decision = decide(with_spec(fixture("claim-wffc-selected"), **spec), fixture("sc-wffc-delete"))
    assert decision.action == claims.REFUSE
    assert words in decision.message


def test_class_problems_are_refused_naming_them() -> None:
    claim = fixture("claim-immediate")
    storage_class = fixture("sc-immediate-retain-xfs")
    storage_class["parameters"]["fstype"] = "ext4"
    assert "unknown parameters: fstype" in decide(claim, storage_class).message
    storage_class = fixture("sc-immediate-retain-xfs")
    storage_class["mountOptions"] = ["noatime", "suid"]
    assert "mount option 'suid' is not allowed" in decide(claim, storage_class).message
    storage_class = fixture("sc-immediate-retain-xfs")
    storage_class["parameters"]["fsType"] = "zfs"
    assert "fsType 'zfs' is not supported" in decide(claim, storage_class).message


def test_size_below_the_filesystems_minimum_is_refused_before_any_pv_exists() -> None:
    claim = with_spec(fixture("claim-immediate"), resources={"requests": {"storage": "100Mi"}})
    decision = decide(claim, fixture("sc-immediate-retain-xfs"))
    assert decision.action == claims.REFUSE
    assert "below the 300Mi that xfs needs" in decision.message


def test_pv_for_a_scheduled_claim() -> None:
    decision = decide(fixture("claim-wffc-selected"), fixture("sc-wffc-delete"))
    assert decision.request is not None
    pv = claims.build_pv(decision.request, fixture("claim-wffc-selected"), "worker-1",
                         "worker-1.lab.example", ME)
    assert pv == {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{UID}",
            "annotations": {"pv.kubernetes.io/provisioned-by": ME, "flexvol.io/node": "worker-1"},
        },
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "flexvol-local",
            "volumeMode": "Filesystem",
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "shop",
                         "name": "data", "uid": UID},
            # fsType is written out even though the class leaves it to the default
            "flexVolume": {"driver": ME, "fsType": "ext4",
                           "options": {"volumeID": f"pvc-{UID}", "size": "1Gi"}},
            # the hostname label's value, which differs from the node's name here
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["worker-1.lab.example"]},
            ]}]}},
        },
    }


def test_class_settings_reach_the_pv_and_mount_options_travel_as_a_driver_option() -> None:
    claim = fixture("claim-immediate")
    decision = decide(claim, fixture("sc-immediate-retain-xfs"))
    assert decision.request is not None
    pv = claims.build_pv(decision.request, claim, "worker-2", "worker-2", ME)
    spec = pv["spec"]
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["flexVolume"]["fsType"] == "xfs"
    assert spec["flexVolume"]["options"]["mountOptions"] == "noatime,discard"
    # the kubelet refuses PV mountOptions for flexVolume (docs/flexvolume.md section 4)
    assert "mountOptions" not in spec
    assert spec["capacity"] == {"storage": "3Gi"}


def test_the_driver_accepts_what_the_pv_will_send() -> None:
    claim = fixture("claim-immediate")
    decision = decide(claim, fixture("sc-immediate-retain-xfs"))
    assert decision.request is not None
    flex = claims.build_pv(decision.request, claim, "worker-2", "worker-2", ME)["spec"]["flexVolume"]
    spec = parse_spec(flex["options"] | {option_keys.FS_TYPE: flex["fsType"],
                                         option_keys.PV_OR_VOLUME_NAME: f"pvc-{claim['metadata']['uid']}"})
    assert claim["metadata"]["uid"] in spec.volume_id
    assert (spec.size_bytes, spec.fs_type, spec.mount_options) == (3 << 30, "xfs", ("noatime", "discard"))


def test_allocation_parameter_reaches_the_driver_and_nothing_else_is_accepted() -> None:
    claim = fixture("claim-immediate")
    storage_class = fixture("sc-immediate-retain-xfs")
    storage_class["parameters"]["allocation"] = "thick"
    decision = decide(claim, storage_class)
    assert decision.request is not None
    flex = claims.build_pv(decision.request, claim, "worker-2", "worker-2", ME)["spec"]["flexVolume"]
    assert flex["options"]["allocation"] == "thick"
    assert parse_spec(flex["options"] | {option_keys.FS_TYPE: flex["fsType"]}).allocation == "thick"
    storage_class["parameters"]["allocation"] = "sparse"
    refused = decide(claim, storage_class)
    assert refused.action == claims.REFUSE
    assert "allocation 'sparse'" in refused.message and "thin or thick" in refused.message
