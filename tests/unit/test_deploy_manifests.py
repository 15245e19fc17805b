"""The deploy/ manifests agree with the code: RBAC grants exactly the calls each side makes,
container arguments are options the commands have, names match the provisioner's."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml

from flexvol.cli import provision
from flexvol.cli.main import load_commands
from flexvol.csi.proto import csi_pb2
from flexvol.provisioning import names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# The CSI plugin's manifests (deploy/csi/), checked on their own below.
CSI_DEPLOY = DEPLOY / "csi"

# (API group, resource, verb) for each call of the Cluster interface the side makes; a watch
# needs "watch" (and the list before it "list").
PROVISIONER_CALLS = {
    ("", "persistentvolumeclaims", "list"),     # list_claims
    ("", "persistentvolumeclaims", "watch"),    # watch_claims
    ("", "persistentvolumeclaims", "get"),      # get_claim: the source of a clone
    ("snapshot.storage.k8s.io", "volumesnapshots", "get"),          # a restore's source
    ("snapshot.storage.k8s.io", "volumesnapshotcontents", "get"),
    ("", "persistentvolumes", "list"),          # list_pvs
    ("", "persistentvolumes", "create"),        # create_pv
    ("", "persistentvolumes", "delete"),        # delete_pv: PVs the agents reclaimed
    ("storage.k8s.io", "storageclasses", "get"),
    ("", "nodes", "get"),                       # the selected node
    ("", "nodes", "list"),                      # Immediate placement
    ("flexvol.io", "nodecapacities", "get"),
    ("flexvol.io", "nodecapacities", "list"),
    ("", "events", "create"),
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
}
AGENT_CALLS = {
    ("", "persistentvolumes", "list"),
    ("", "persistentvolumes", "watch"),
    ("", "nodes", "get"),
    ("flexvol.io", "nodecapacities", "get"),
    ("flexvol.io", "nodecapacities", "create"),
    ("flexvol.io", "nodecapacities", "update"),
    ("", "events", "create"),
}


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def everything() -> list[dict]:
    """The FlexVolume side's manifests (deploy/*.yaml and examples), without deploy/csi/."""
    return [doc for path in sorted(DEPLOY.rglob("*.yaml")) if CSI_DEPLOY not in path.parents
            for doc in documents(path)]


def granted(account: str, docs: list[dict] | None = None) -> set[tuple[str, str, str]]:
    docs = everything() if docs is None else docs
    roles = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs
             if doc["kind"] in ("Role", "ClusterRole")}
    grants = set()
    for binding in (doc for doc in docs if doc["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        if not any(subject["name"] == account for subject in binding["subjects"]):
            continue
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants.add((group, resource, verb))
    return grants


@pytest.mark.parametrize(("account", "calls"), [("flexvol-provisioner", PROVISIONER_CALLS),
                                                 ("flexvol-agent", AGENT_CALLS)])
def test_rbac_grants_exactly_the_calls_made(account: str, calls: set) -> None:
    assert granted(account) == calls
    assert not any("*" in part for grant in granted(account) for part in grant)


def test_the_agent_may_not_write_persistent_volumes() -> None:
    """Agent and provisioner trust: every node's agent could delete any PV in the cluster (other
    drivers' too). PVs are cluster-scoped, so any PV write granted to the agents' account is
    cluster-wide: they get none; the provisioner deletes the PVs they reclaimed."""
    writes = {"create", "update", "patch", "delete", "deletecollection", "*"}
    assert not {grant for grant in granted("flexvol-agent")
                if grant[1] in ("persistentvolumes", "*") and grant[2] in writes}
    assert ("", "persistentvolumes", "delete") in granted("flexvol-provisioner")


def test_the_lease_role_names_the_provisioners_lease() -> None:
    [role] = [doc for doc in everything() if doc["kind"] == "Role"]
    named = [rule for rule in role["rules"] if "update" in rule["verbs"]]
    assert named[0]["resourceNames"] == [provision.LEASE]


def command_options(name: str) -> set[str]:
    command = typer.main.get_command(load_commands())
    return {option for param in command.commands[name].params for option in param.opts
            + getattr(param, "secondary_opts", [])}


def containers() -> list[dict]:
    found = []
    for doc in everything():
        if doc["kind"] in ("Deployment", "DaemonSet"):
            spec = doc["spec"]["template"]["spec"]
            found += spec.get("initContainers", []) + spec["containers"]
    return found


def test_container_arguments_are_options_of_their_command() -> None:
    seen = set()
    for container in containers():
        program, command = container["command"]
        assert program == "flexvol"
        options = command_options(command)
        flags = [arg for arg in container.get("args", []) if arg.startswith("--")]
        assert set(flags) <= options, (container["name"], set(flags) - options)
        seen.add(command)
    assert seen == {"provisioner", "agent"}


def test_agent_mounts_host_paths_where_the_host_has_them() -> None:
    [daemonset] = [doc for doc in everything() if doc["kind"] == "DaemonSet"]
    spec = daemonset["spec"]["template"]["spec"]
    host_paths = {volume["name"]: volume["hostPath"]["path"] for volume in spec["volumes"]}
    assert host_paths["plugin-dir"] == provision.PLUGIN_DIR
    assert host_paths["lib-dir"] == provision.LIB_DIR
    for container in spec["initContainers"] + spec["containers"]:
        for mount in container["volumeMounts"]:
            assert mount["mountPath"] == host_paths[mount["name"]]
    [agent] = spec["containers"]
    kubelet = next(mount for mount in agent["volumeMounts"] if mount["name"] == "kubelet-dir")
    assert kubelet["mountPropagation"] == "HostToContainer" and kubelet["readOnly"] is True


def test_example_classes_and_crd_use_the_provisioners_names() -> None:
    docs = everything()
    classes = [doc for doc in docs if doc["kind"] == "StorageClass"]
    assert classes and all(doc["provisioner"] == names.PROVISIONER_NAME for doc in classes)
    [crd] = [doc for doc in docs if doc["kind"] == "CustomResourceDefinition"]
    assert crd["metadata"]["name"] == f"{names.CAPACITY_PLURAL}.{names.CAPACITY_GROUP}"
    assert crd["spec"]["names"]["kind"] == names.CAPACITY_KIND
    assert [version["name"] for version in crd["spec"]["versions"]] == [names.CAPACITY_VERSION]


def test_the_crd_schema_keeps_every_field_the_agent_publishes() -> None:
    # The API server prunes fields a structural schema does not name, silently.
    from flexvol.provisioning.capacity import capacity_object

    [crd] = [doc for doc in everything() if doc["kind"] == "CustomResourceDefinition"]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    published = capacity_object("n1", "uid-1", 1 << 30, {"v1": 1 << 20})
    assert set(published) <= set(schema["properties"])
    assert set(schema["required"]) <= set(published)


# deploy/csi/: the CSI plugin's manifests agree with what `flexvol csi` serves.

# (API group, resource, verb) the node-deployed external-provisioner calls with
# --node-deployment and --enable-capacity, no leader election, no snapshots, no ControllerPublish
# (kubernetes-csi/external-provisioner deploy/kubernetes/rbac.yaml, less what this deployment
# does not use: see deploy/csi/rbac.yaml).
CSI_PROVISIONER_CALLS = {
    *{("", "persistentvolumes", verb) for verb in ("get", "list", "watch", "create", "patch", "delete")},
    *{("", "persistentvolumeclaims", verb) for verb in ("get", "list", "watch", "update")},
    *{("storage.k8s.io", "storageclasses", verb) for verb in ("get", "list", "watch")},
    *{("", "events", verb) for verb in ("list", "watch", "create", "update", "patch")},
    # A claim restored from a VolumeSnapshot.
    *{("snapshot.storage.k8s.io", resource, verb)
      for resource in ("volumesnapshots", "volumesnapshotcontents") for verb in ("get", "list")},
}
# The node-deployed csi-snapshotter (kubernetes-csi/external-snapshotter
# deploy/kubernetes/csi-snapshotter/rbac-csi-snapshotter.yaml, less the leases).
CSI_SNAPSHOTTER_CALLS = {
    *{("", "events", verb) for verb in ("list", "watch", "create", "update", "patch")},
    *{(group, classes, verb) for group, classes in (
        ("snapshot.storage.k8s.io", "volumesnapshotclasses"),
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotclasses")) for verb in ("get", "list", "watch")},
    *{(group, contents, verb) for group, contents in (
        ("snapshot.storage.k8s.io", "volumesnapshotcontents"),
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents"))
      for verb in ("get", "list", "watch", "update", "patch")},
    *{(group, status, verb) for group, status in (
        ("snapshot.storage.k8s.io", "volumesnapshotcontents/status"),
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents/status"))
      for verb in ("update", "patch")},
}
# Namespaced: the node's CSIStorageCapacity object and the pod read to find its owner.
CSI_CAPACITY_CALLS = {
    *{("storage.k8s.io", "csistoragecapacities", verb)
      for verb in ("get", "list", "watch", "create", "update", "patch", "delete")},
    ("", "pods", "get"),
}


def csi_documents() -> list[dict]:
    """The plugin's own manifests; snapshot-controller.yaml is the cluster's component, checked
    in test_deploy_csi_sidecars.py."""
    return [doc for path in sorted(CSI_DEPLOY.glob("*.yaml")) if path.name != "snapshot-controller.yaml"
            for doc in documents(path)]


def csi_kind(kind: str) -> dict:
    [doc] = [doc for doc in csi_documents() if doc["kind"] == kind]
    return doc


def csi_pod() -> dict:
    return csi_kind("DaemonSet")["spec"]["template"]["spec"]


def csi_container(name: str) -> dict:
    [container] = [c for c in csi_pod()["containers"] if c["name"] == name]
    return container


def host_path(container: dict, path: str) -> str:
    """Where `path` inside the container is on the host, through its hostPath mounts."""
    volumes = {volume["name"]: volume["hostPath"]["path"] for volume in csi_pod()["volumes"]}
    mounts = sorted(container["volumeMounts"], key=lambda mount: -len(mount["mountPath"]))
    for mount in mounts:
        inside = mount["mountPath"].rstrip("/")
        if path == inside or path.startswith(inside + "/"):
            return volumes[mount["name"]] + path[len(inside):]
    raise AssertionError(f"{path} is not on a host path in {container['name']}")


def argument(container: dict, option: str) -> str:
    args = container["args"]
    for index, arg in enumerate(args):
        if arg == option:
            return args[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{container['name']} has no {option}")


def _node_capabilities() -> set[int]:
    from flexvol.core.config import Config
    from flexvol.csi.node import Node

    reply = Node(Config("/nonexistent"), "node").NodeGetCapabilities(
        csi_pb2.NodeGetCapabilitiesRequest(), None)
    return {item.rpc.type for item in reply.capabilities}


def _controller_capabilities() -> set[int]:
    from flexvol.core.config import Config
    from flexvol.csi.controller import Controller

    reply = Controller(Config("/nonexistent"), "node").ControllerGetCapabilities(
        csi_pb2.ControllerGetCapabilitiesRequest(), None)
    return {item.rpc.type for item in reply.capabilities}


def test_csi_driver_object_declares_what_the_plugin_serves() -> None:
    from flexvol.csi import names as csi_names

    driver = csi_kind("CSIDriver")
    assert driver["metadata"]["name"] == csi_names.DRIVER_NAME
    spec = driver["spec"]
    assert spec["attachRequired"] is False      # no ControllerPublish capability
    assert spec["podInfoOnMount"] is True
    assert spec["storageCapacity"] is True      # the provisioner runs with --enable-capacity
    # The plugin applies fsGroup itself (VOLUME_MOUNT_GROUP): a kubelet that delegates (1.23
    # and later) then ignores fsGroupPolicy; File leaves an older kubelet its recursive chown
    # rather than no fsGroup at all.
    assert spec["fsGroupPolicy"] == "File"
    assert csi_pb2.NodeServiceCapability.RPC.VOLUME_MOUNT_GROUP in _node_capabilities()
    assert sorted(spec["volumeLifecycleModes"]) == ["Ephemeral", "Persistent"]


def test_csi_plugin_and_sidecars_use_the_same_socket() -> None:
    from flexvol.csi.server import socket_path

    plugin = csi_container("plugin")
    assert plugin["command"] == ["flexvol", "csi"]
    flags = {arg.split("=", 1)[0] for arg in plugin["args"] if arg.startswith("--")}
    assert flags <= command_options("csi"), flags - command_options("csi")
    socket = socket_path(argument(plugin, "--endpoint"))
    # The plugin registers itself and tells the kubelet this path: it must be the host's too.
    assert host_path(plugin, socket) == socket
    sidecars = [c["name"] for c in csi_pod()["containers"] if c["name"] != "plugin"]
    assert {"csi-provisioner", "csi-snapshotter", "liveness-probe"} <= set(sidecars)
    for name in sidecars:
        sidecar = csi_container(name)
        assert host_path(sidecar, argument(sidecar, "--csi-address")) == socket, name


def test_csi_plugin_mounts_what_it_works_on() -> None:
    plugin = csi_container("plugin")
    assert plugin["securityContext"]["privileged"] is True
    assert argument(plugin, "--node-id") == "$(NODE_NAME)"
    env = {item["name"]: item for item in plugin["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    registration = argument(plugin, "--registration-dir")
    assert host_path(plugin, registration) == "/var/lib/kubelet/plugins_registry"
    assert host_path(plugin, "/dev") == "/dev"
    assert host_path(plugin, argument(plugin, "--root")) == "/var/lib/flexvol"
    # Stage and publish mounts are made under these and must reach the kubelet.
    for kubelet_dir in ("/var/lib/kubelet/pods", "/var/lib/kubelet/plugins"):
        [mount] = [m for m in plugin["volumeMounts"] if m["mountPath"] == kubelet_dir]
        assert host_path(plugin, kubelet_dir) == kubelet_dir
        assert mount["mountPropagation"] == "Bidirectional"


def test_csi_provisioner_runs_on_each_node_with_capacity() -> None:
    provisioner = csi_container("csi-provisioner")
    assert provisioner["image"].startswith("registry.k8s.io/sig-storage/csi-provisioner:v")
    args = provisioner["args"]
    assert {"--node-deployment", "--enable-capacity", "--feature-gates=Topology=true"} <= set(args)
    assert argument(provisioner, "--capacity-ownerref-level") == "1"   # the DaemonSet
    # Snapshot finalizer sweep off: rbac.yaml grants nothing on VolumeSnapshots.
    assert argument(provisioner, "--snapshot-orphan-sweep-interval") == "0"
    assert not any(arg.startswith("--leader-election") for arg in args)
    env = {item["name"]: item["valueFrom"]["fieldRef"]["fieldPath"] for item in provisioner["env"]}
    assert env == {"NODE_NAME": "spec.nodeName", "NAMESPACE": "metadata.namespace",
                   "POD_NAME": "metadata.name"}


def test_csi_storage_class_names_the_driver_and_parameters_it_accepts() -> None:
    from flexvol.core.filesystems import FILESYSTEMS
    from flexvol.csi import names as csi_names
    from flexvol.csi.controller import parse_parameters

    storage_class = csi_kind("StorageClass")
    assert storage_class["provisioner"] == csi_names.DRIVER_NAME
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    # Expansion is served: controller and node EXPAND_VOLUME, plugin VolumeExpansion ONLINE.
    assert storage_class["allowVolumeExpansion"] is True
    assert csi_pb2.NodeServiceCapability.RPC.EXPAND_VOLUME in _node_capabilities()
    assert csi_pb2.ControllerServiceCapability.RPC.EXPAND_VOLUME in _controller_capabilities()
    # The filesystem goes the standard way: the external-provisioner takes
    # csi.storage.k8s.io/fstype out of the parameters into the capability's fs_type (a plain
    # fsType parameter draws its deprecation warning).
    parameters = dict(storage_class["parameters"])
    assert "fsType" not in parameters
    assert parameters.pop("csi.storage.k8s.io/fstype") in FILESYSTEMS
    # CreateVolume's own check: a misspelt key or value raises INVALID_ARGUMENT here.
    assert parse_parameters(parameters) == ("", "thick")


def test_csi_rbac_grants_the_node_provisioner_exactly_what_it_calls() -> None:
    docs = csi_documents()
    account = csi_pod()["serviceAccountName"]
    [service_account] = [doc for doc in docs if doc["kind"] == "ServiceAccount"]
    assert service_account["metadata"]["name"] == account
    namespace = service_account["metadata"]["namespace"]
    cluster = [doc for doc in docs if doc["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    namespaced = [doc for doc in docs if doc["kind"] in ("Role", "RoleBinding")]
    assert all(doc["metadata"]["namespace"] == namespace for doc in namespaced)
    assert granted(account, cluster) == CSI_PROVISIONER_CALLS | CSI_SNAPSHOTTER_CALLS
    assert granted(account, namespaced) == CSI_CAPACITY_CALLS
    everything_granted = granted(account, docs)
    assert not any("*" in part for grant in everything_granted for part in grant)
    assert not any(grant[1] == "persistentvolumes" and grant[2] == "update"
                   for grant in everything_granted)
