"""PVC -> PV binding by the PersistentVolume controller's rules, and the options each call gets."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flexvol.cli.main import load_commands
from flexvol.simulate import manifests
from flexvol.simulate.binding import bind
from flexvol.simulate.plan import driver_path, mount_options, plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(*names: str) -> manifests.Manifests:
    return manifests.load([str(EXAMPLES / name) for name in names])


def pv(name: str, *, size: str = "1Gi", modes: tuple[str, ...] = ("ReadWriteOnce",), cls: str = "c",
       labels: dict | None = None, claim_ref: dict | None = None, mode: str | None = None) -> dict:
    spec: dict = {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls,
                  "flexVolume": {"driver": "flexvol/loop", "options": {"volumeID": name}}}
    if claim_ref:
        spec["claimRef"] = claim_ref
    if mode:
        spec["volumeMode"] = mode
    return {"kind": "PersistentVolume", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def claim(**spec: object) -> dict:
    body = {"accessModes": ["ReadWriteOnce"], "storageClassName": "c",
            "resources": {"requests": {"storage": "1Gi"}}}
    body.update(spec)
    metadata = {"name": "data", "namespace": "default"}
    return {"kind": "PersistentVolumeClaim", "metadata": metadata, "spec": body}


def found(*documents: dict) -> manifests.Manifests:
    result = manifests.Manifests()
    for document in documents:
        result.add(document, "test")
    return result


def test_example_claim_binds_to_the_labelled_volume() -> None:
    binding = bind("data", "default", load("storageclass.yaml", "pv-pvc-pod.yaml"))
    assert binding.pv is not None and binding.pv["metadata"]["name"] == "pv-data-1"


def test_unbindable_example_names_the_rule_each_volume_fails() -> None:
    binding = bind("big", "default", load("storageclass.yaml", "unbindable-claim.yaml"))
    assert binding.pv is None
    reasons = dict(binding.rejected)
    assert "capacity 256Mi is less than the 1Gi requested" in reasons["pv-small"]
    assert "storageClassName 'slow'" in reasons["pv-other-class"]
    assert "lack ReadWriteOnce" in reasons["pv-read-only-many"]


def test_smallest_matching_volume_wins() -> None:
    binding = bind("data", "default", found(pv("big", size="10Gi"), pv("small", size="2Gi"), claim()))
    assert binding.pv["metadata"]["name"] == "small"


def test_claim_ref_selector_and_volume_mode_rules() -> None:
    other = {"name": "someone-else", "namespace": "default"}
    binding = bind("data", "default", found(
        pv("reserved", claim_ref=other), pv("block", mode="Block"), pv("unlabelled"),
        claim(selector={"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fast"]}]})))
    reasons = dict(binding.rejected)
    assert binding.pv is None
    assert "claimRef reserves it for default/someone-else" in reasons["reserved"]
    assert "volumeMode Block" in reasons["block"]
    assert "fails the selector tier In ['fast']" in reasons["unlabelled"]


def test_unset_class_takes_the_default_storage_class() -> None:
    default = {"kind": "StorageClass", "metadata": {"name": "c", "annotations": {
        "storageclass.kubernetes.io/is-default-class": "true"}}}
    body = claim()
    del body["spec"]["storageClassName"]
    assert bind("data", "default", found(default, pv("one"), body)).pv is not None


def test_volume_name_binds_only_that_volume() -> None:
    binding = bind("data", "default", found(pv("a"), pv("b"), claim(volumeName="b")))
    assert binding.pv["metadata"]["name"] == "b" and binding.how == "volumeName"


def test_inline_volume_options_follow_the_kubelet_order() -> None:
    [pod] = plan(load("inline-pod.yaml"), "node-1")
    [volume] = pod.volumes
    assert volume.pv_or_volume_name == "scratch" and volume.driver == "flexvol/loop"
    options = mount_options(volume, pod.uid)
    assert options["kubernetes.io/mounterArgs.FsGroup"] == "2000"
    assert options["kubernetes.io/readwrite"] == "rw" and options["volumeID"] == "inline-demo"
    assert driver_path("flexvol/loop", "/plugins") == "/plugins/flexvol~loop/loop"


def test_secrets_need_the_driver_type_and_are_passed_base64() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"volumes": [{"name": "v", "flexVolume": {
        "driver": "flexvol/loop", "secretRef": {"name": "s"}, "options": {"volumeID": "v1"}}}]}}
    secret = {"kind": "Secret", "metadata": {"name": "s"}, "type": "flexvol/loop",
              "data": {"a": "eA=="}, "stringData": {"b": "y"}}
    [plan_] = plan(found(pod, secret), "n")
    assert plan_.volumes[0].mount_extra["kubernetes.io/secret/a"] == "eA=="
    assert plan_.volumes[0].mount_extra["kubernetes.io/secret/b"] == "eQ=="
    secret["type"] = "Opaque"
    [plan_] = plan(found(pod, secret), "n")
    assert "the kubelet requires the driver name" in plan_.volumes[0].problem


def test_dry_run_prints_the_plan_without_calling_a_driver() -> None:
    result = CliRunner().invoke(load_commands(), [
        "simulate", "--dry-run", "--json", "--driver", "/nonexistent",
        "-f", str(EXAMPLES / "storageclass.yaml"), "-f", str(EXAMPLES / "pv-pvc-pod.yaml")],
        env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)
    verbs = [step["argv"][0] for step in entry["plan"]]
    assert verbs == ["init", "attach", "waitforattach", "mountdevice", "mount", "unmount", "unmountdevice",
                     "detach"]


def test_unbindable_claim_fails_the_dry_run_with_reasons() -> None:
    result = CliRunner().invoke(load_commands(), [
        "simulate", "--dry-run", "-f", str(EXAMPLES / "storageclass.yaml"),
        "-f", str(EXAMPLES / "unbindable-claim.yaml")], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 1
    assert "claim default/big cannot bind" in result.stdout
    assert "PV pv-small: capacity 256Mi is less than the 1Gi requested" in result.stdout
