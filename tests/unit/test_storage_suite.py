"""The pieces of the Kubernetes storage suite run (tests/e2e/storage_suite.py) that need no
cluster: the driver definition claims only what the plugin advertises, its StorageClass is one
the plugin accepts, the pod network plugin leases and frees addresses, and the runner selects
and reports specs as it says."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from flexvol.core.config import Config
from flexvol.core.filesystems import FILESYSTEMS
from flexvol.core.quantity import parse_quantity
from flexvol.csi import names
from flexvol.csi.controller import parse_parameters
from flexvol.csi.identity import Identity
from flexvol.csi.node import Node
from flexvol.csi.proto import csi_pb2
from flexvol.csi.snapshots import SnapshotController
from tests.e2e import storage_suite
from tests.helpers.csi import NODE, FakeContext

REPO = Path(__file__).resolve().parents[2]
ControllerRPC = csi_pb2.ControllerServiceCapability.RPC.Type
NodeRPC = csi_pb2.NodeServiceCapability.RPC.Type
Service = csi_pb2.PluginCapability.Service.Type


def definition() -> dict:
    return yaml.safe_load(storage_suite.DRIVER_FILE.read_text())


def advertised(config: Config) -> set[str]:
    """What the plugin's Get*Capabilities answer, as names."""
    controller = SnapshotController(config, NODE).ControllerGetCapabilities(
        csi_pb2.ControllerGetCapabilitiesRequest(), FakeContext())
    node = Node(config, NODE).NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest(), FakeContext())
    plugin = Identity().GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest(), FakeContext())
    return ({f"controller:{ControllerRPC.Name(c.rpc.type)}" for c in controller.capabilities}
            | {f"node:{NodeRPC.Name(c.rpc.type)}" for c in node.capabilities}
            | {f"plugin:{Service.Name(c.service.type)}" for c in plugin.capabilities
               if c.HasField("service")})


# Each suite capability claimed true and the plugin capabilities it rests on.
NEEDS = {
    "topology": {"plugin:VOLUME_ACCESSIBILITY_CONSTRAINTS"},
    "controllerExpansion": {"controller:EXPAND_VOLUME"},
    "nodeExpansion": {"node:EXPAND_VOLUME"},
    "volumeMountGroup": {"node:VOLUME_MOUNT_GROUP"},
    "capacity": {"controller:GET_CAPACITY"},
    "snapshotDataSource": {"controller:CREATE_DELETE_SNAPSHOT"},
    "pvcDataSource": {"controller:CLONE_VOLUME"},
    "multipods": {"node:STAGE_UNSTAGE_VOLUME"},
}


def test_the_driver_definition_claims_only_what_the_plugin_advertises(config: Config) -> None:
    info = definition()["DriverInfo"]
    assert info["Name"] == names.DRIVER_NAME
    assert info["TopologyKeys"] == [names.TOPOLOGY_KEY]
    have = advertised(config)
    claimed = {name for name, value in info["Capabilities"].items() if value}
    for capability in sorted(claimed & NEEDS.keys()):
        assert NEEDS[capability] <= have, f"{capability} needs {NEEDS[capability] - have}"
    # What the plugin does not have is said so, not left to the suite's defaults.
    assert not info["Capabilities"]["RWX"] and not info["Capabilities"]["capReadOnlyMany"]
    assert "controller:PUBLISH_UNPUBLISH_VOLUME" not in have  # no attach: the suite needs none
    assert not info["Capabilities"]["groupSnapshot"]


def test_the_driver_definitions_filesystems_and_sizes_are_the_plugins(config: Config) -> None:
    info = definition()["DriverInfo"]
    fs_types = set(info["SupportedFsType"])  # a Go set: a map with empty values
    assert "" in fs_types and fs_types - {""} <= set(FILESYSTEMS)
    # The smallest claim the suite makes fits every filesystem it asks for.
    smallest = parse_quantity(info["SupportedSizeRange"]["Min"])
    assert all(smallest >= FILESYSTEMS[fs].min_bytes for fs in fs_types - {""})
    assert parse_quantity(info["SupportedSizeRange"]["Max"]) > smallest


def test_the_files_the_definition_names_exist_and_the_plugin_accepts_its_class() -> None:
    spec = definition()
    for path in (spec["StorageClass"]["FromFile"], spec["SnapshotClass"]["FromFile"]):
        assert (REPO / path).is_file(), path
    storage_class = yaml.safe_load((REPO / spec["StorageClass"]["FromFile"]).read_text())
    assert storage_class["provisioner"] == names.DRIVER_NAME
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    # No fsType: the suite's csi.storage.k8s.io/fstype must decide each volume's filesystem.
    for fs_type in ("", "ext4", "xfs"):
        parameters = dict(storage_class["parameters"])
        if fs_type:
            parameters["csi.storage.k8s.io/fstype"] = fs_type
        assert parse_parameters(parameters) == ("", "thick")
    snapshot_class = yaml.safe_load((REPO / spec["SnapshotClass"]["FromFile"]).read_text())
    assert snapshot_class["driver"] == names.DRIVER_NAME


def network(tmp_path: Path, command: str, sandbox: str = "",
            config: dict | None = None) -> subprocess.CompletedProcess:
    conf = {"cniVersion": "0.4.0", "name": "pods", "type": storage_suite.NETWORK_TYPE,
            "leaseDir": str(tmp_path / "leases")} if config is None else config
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": sandbox, "CNI_NETNS": f"/run/netns/{sandbox}",
           "CNI_IFNAME": "eth0", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([str(storage_suite.NETWORK_PLUGIN)], input=json.dumps(conf), env=env,
                          capture_output=True, text=True, check=False)


def test_the_pod_network_leases_one_address_per_sandbox_and_frees_it(tmp_path: Path) -> None:
    first = json.loads(network(tmp_path, "ADD", "a").stdout)
    assert first["interfaces"] == [{"name": "eth0", "sandbox": "/run/netns/a"}]
    assert first["ips"] == [{"version": "4", "interface": 0, "address": "10.88.0.2/16"}]
    assert json.loads(network(tmp_path, "ADD", "a").stdout) == first  # a repeat keeps it
    second = json.loads(network(tmp_path, "ADD", "b").stdout)
    assert second["ips"][0]["address"] == "10.88.0.3/16"
    assert network(tmp_path, "DEL", "a").returncode == 0
    leases = sorted(p.name for p in (tmp_path / "leases").iterdir() if not p.name.startswith("."))
    assert leases == ["10.88.0.3"]
    assert network(tmp_path, "DEL", "a").returncode == 0  # DEL is idempotent
    assert json.loads(network(tmp_path, "ADD", "c").stdout)["ips"][0]["address"] == "10.88.0.2/16"
    assert json.loads(network(tmp_path, "VERSION", config={}).stdout)["supportedVersions"][-1] == "0.4.0"


def test_the_pod_network_refuses_a_config_it_cannot_serve(tmp_path: Path) -> None:
    done = network(tmp_path, "ADD", "a", config={"cniVersion": "0.4.0", "name": "pods"})
    assert done.returncode == 1 and json.loads(done.stdout)["msg"] == "the network config names no leaseDir"
    done = network(tmp_path, "ADD", "a", config={"cniVersion": "1.1.0", "leaseDir": str(tmp_path)})
    assert done.returncode == 1 and "cniVersion 1.1.0 is not supported" in json.loads(done.stdout)["msg"]


SPECS = [
    "External Storage [Driver: loop.flexvol.io] [Testpattern: Dynamic PV (ext4)] volumes should store data",
    "External Storage [Driver: loop.flexvol.io] [Testpattern: Dynamic PV (default fs)] provisioning should "
    "provision storage with snapshot data source [Feature:VolumeSnapshotDataSource]",
    "External Storage [Driver: loop.flexvol.io] [Testpattern: Dynamic PV (default fs)] provisioning should "
    "provision storage with snapshot data source (ROX mode) [Feature:VolumeSnapshotDataSource]",
    "External Storage [Driver: loop.flexvol.io] [Testpattern: Dynamic PV (xfs)] volumes should store data",
    "External Storage [Driver: csi-hostpath] [Testpattern: Dynamic PV (ext4)] volumes should store data",
]


def test_the_subset_focus_selects_the_named_specs_only() -> None:
    focus = re.compile(storage_suite.subset_focus())
    assert [bool(focus.search(spec)) for spec in SPECS] == [True, True, False, False, False]
    assert all(re.compile(storage_suite.FOCUS_ALL).search(spec) for spec in SPECS[:4])


def report(specs: list[dict]) -> list[dict]:
    return [{"SpecReports": [{"ContainerHierarchyTexts": ["External Storage [Driver: loop.flexvol.io]",
                                                          "[Testpattern: Dynamic PV (ext4)] volumes"],
                              "LeafNodeType": "It", **spec} for spec in specs]}]


def test_the_summary_lists_selected_specs_with_their_reasons(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report([
        {"LeafNodeText": "should store data", "State": "passed"},
        {"LeafNodeText": "should allow exec", "State": "failed",
         "Failure": {"Message": "timed out waiting for pod\nmore"}},
        {"LeafNodeText": "on different node", "State": "skipped",
         "Failure": {"Message": "Number of available nodes is less than 2 - skipping"}},
        {"LeafNodeText": "filtered out", "State": "skipped"},
    ])))
    found = storage_suite.summarize(path)
    assert found == {
        "passed": [("[Testpattern: Dynamic PV (ext4)] volumes should store data", "")],
        "failed": [("[Testpattern: Dynamic PV (ext4)] volumes should allow exec",
                    "timed out waiting for pod")],
        "skipped": [("[Testpattern: Dynamic PV (ext4)] volumes on different node",
                     "Number of available nodes is less than 2 - skipping")]}
    assert storage_suite.format_summary(found).splitlines()[0] == "failed 1, passed 1, skipped 1"


def test_the_suite_is_given_the_driver_the_repository_and_the_clusters_paths(tmp_path: Path) -> None:
    argv = storage_suite.suite_argv(Path("/x/e2e.test"), focus="F", skip="S", report_dir=tmp_path,
                                    kubeconfig=Path("/k"), kubelet_root=Path("/kr"),
                                    kubectl=Path("/b/kubectl"))
    assert argv[0] == "/x/e2e.test"
    for arg in ("-ginkgo.focus=F", "-ginkgo.skip=S", f"-storage.testdriver={storage_suite.DRIVER_FILE}",
                f"-repo-root={REPO}", "-kubeconfig=/k", "-kubelet-root-dir=/kr", "-kubectl-path=/b/kubectl",
                f"-ginkgo.json-report={tmp_path / 'report.json'}"):
        assert arg in argv
    assert "-ginkgo.dry-run" not in argv


@pytest.mark.parametrize("name, stands_in", [
    ("registry.k8s.io/e2e-test-images/busybox:1.37.0-2", True),
    ("registry.k8s.io/e2e-test-images/nginx:1.27.0-2", True),
    ("registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1", False),
    ("registry.k8s.io/e2e-test-images/agnhost:2.66.1", False),
])
def test_only_images_whose_pods_get_a_command_are_stood_in_for(name: str, stands_in: bool) -> None:
    assert bool(storage_suite.BUSYBOX_LIKE.search(name)) is stands_in
    assert bool(storage_suite.AGNHOST.search(name)) is (name.split("/")[-1].startswith("agnhost:"))
    assert bool(storage_suite.GLIBC.search(name)) is ("glibc" in name)


def test_multivolumes_glibc_pods_get_gnu_dd_whose_nocache_busybox_lacks(tmp_path: Path) -> None:
    """`dd ... oflag=nocache` (the suite's CheckWriteToPath) through the image's own /bin/sh."""
    import tarfile

    apps = sorted(Path("/var/cache/flexvol-k8s").glob("*/images/app.tar"))  # the cluster build's
    if not apps or os.geteuid() != 0:
        pytest.skip("needs root and the cluster build's busybox image (scripts/k8s-current-build.sh)")
    image = storage_suite.glibc_image(apps[-1], "glibc:1", tmp_path)
    root = tmp_path / "root"
    with tarfile.open(image) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        for layer in manifest["Layers"]:
            with tarfile.open(fileobj=tar.extractfile(layer)) as inner:
                for member in inner.getmembers():  # an upper layer's file replaces a symlink, as in overlayfs
                    if not member.isdir() and (root / member.name).is_symlink():
                        (root / member.name).unlink()
                    inner.extract(member, root)
    script = "echo aGVsbG8K | base64 -d | dd of=/tmp/x oflag=nocache bs=6 count=1 && cat /tmp/x"
    done = subprocess.run(["chroot", str(root), "/bin/sh", "-c", script], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n"


def test_agnhosts_image_is_its_binary_over_the_busybox_layers_with_upstreams_entry_point(
        tmp_path: Path) -> None:
    import importlib.util
    import tarfile

    spec = importlib.util.spec_from_file_location("e2e_image", REPO / "scripts" / "e2e_image.py")
    assert spec and spec.loader
    e2e_image = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(e2e_image)
    (tmp_path / "busybox").write_bytes(b"not really busybox")
    (tmp_path / "agnhost").write_bytes(b"not really agnhost")
    e2e_image.main([str(tmp_path / "app.tar"), "app:1", str(tmp_path / "busybox"), "/bin/busybox"])
    e2e_image.main(["--over", str(tmp_path / "app.tar"), str(tmp_path / "agnhost.tar"),
                    "registry.k8s.io/e2e-test-images/agnhost:2.66.1", str(tmp_path / "agnhost"), "/agnhost",
                    "--cmd", "pause"])
    with tarfile.open(tmp_path / "agnhost.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest["Config"]))  # type: ignore[arg-type]
        files = []
        for layer in manifest["Layers"]:
            with tarfile.open(fileobj=tar.extractfile(layer)) as inner:
                files.append(inner.getnames())
    assert manifest["RepoTags"] == ["registry.k8s.io/e2e-test-images/agnhost:2.66.1"]
    assert "bin/busybox" in files[0] and "agnhost" in files[1]
    assert config["config"]["Entrypoint"] == ["/agnhost"] and config["config"]["Cmd"] == ["pause"]
    assert len(config["rootfs"]["diff_ids"]) == 2


def test_pod_network_namespaces_stay_inside_the_clusters_root(tmp_path: Path) -> None:
    from tests.e2e import release

    config = release.containerd_config(tmp_path, tmp_path / "sock", tmp_path / "runc", tmp_path / "cni-bin",
                                       tmp_path / "cni-conf", "pause:1")
    patched = storage_suite.private_netns(config)
    runtime = patched.split("[plugins.'io.containerd.cri.v1.runtime']\n", 1)[1].split("\n  [", 1)[0]
    assert "  netns_mounts_under_state_dir = true" in runtime.splitlines()
    assert patched.replace("  netns_mounts_under_state_dir = true\n", "") == config


def test_pre_provisioned_snapshot_contents_get_the_nodes_managed_by_label() -> None:
    """Under distributed snapshotting the node's csi-snapshotter sees labelled contents only."""
    import threading

    stop = threading.Event()
    listed = {"items": [
        {"metadata": {"name": "pre-provisioned"}, "spec": {"driver": "loop.flexvol.io"}},
        {"metadata": {"name": "made-from-a-pv", "labels": {storage_suite.MANAGED_BY: "vm"}},
         "spec": {"driver": "loop.flexvol.io"}},
        {"metadata": {"name": "another-driver"}, "spec": {"driver": "hostpath.csi.k8s.io"}},
    ]}
    calls: list[tuple[str, ...]] = []

    class FakeCluster:
        node_name = "vm"

        def kubectl(self, *args: str, check: bool = True) -> str:
            calls.append(args)
            if args[0] == "label":
                stop.set()
            return json.dumps(listed) if args[0] == "get" else ""

    storage_suite.label_contents(FakeCluster(), stop)  # type: ignore[arg-type]
    assert [call for call in calls if call[0] == "label"] == [
        ("label", "volumesnapshotcontent", "pre-provisioned", f"{storage_suite.MANAGED_BY}=vm")]
