"""deploy/csi's sidecars: the images are the releases scripts/csi-sidecars-build.sh builds, each
sidecar runs the way a node-local driver needs (per node, no leader election), the snapshot
pieces agree with each other and with the plugin, and the e2e suite's host processes
(tests/e2e/sidecars.py) run exactly the manifest's command lines. Each check is a function of
the parsed manifests, so test_checks_fail_on_broken_manifests can feed them broken copies."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.e2e import sidecars

REPO = Path(__file__).resolve().parents[2]
CSI_DEPLOY = REPO / "deploy" / "csi"
BUILD_SCRIPT = REPO / "scripts" / "csi-sidecars-build.sh"
REGISTRAR_OPTION = CSI_DEPLOY / "options" / "node-driver-registrar.yaml"
IMAGE_PREFIX = "registry.k8s.io/sig-storage/"
# Image name -> the build script's version variable.
BUILT_IMAGES = {"csi-provisioner": "PROVISIONER_VERSION", "csi-snapshotter": "SNAPSHOTTER_VERSION",
                "snapshot-controller": "SNAPSHOTTER_VERSION", "csi-resizer": "RESIZER_VERSION"}
# Not built: the module proxy serves neither module (their v2 tags lack a /v2 module path).
UNBUILT_IMAGES = {"livenessprobe", "csi-node-driver-registrar"}

Docs = dict[str, list[dict]]


def load() -> Docs:
    """Every manifest of deploy/csi by file name (options/ included)."""
    paths = [*sorted(CSI_DEPLOY.glob("*.yaml")), REGISTRAR_OPTION]
    return {path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc] for path in paths}


def build_versions() -> dict[str, str]:
    text = BUILD_SCRIPT.read_text()
    return dict(re.findall(r'^([A-Z]+_VERSION)="(v[0-9.]+)"$', text, re.MULTILINE))


def containers(docs: Docs, file: str) -> dict[str, dict]:
    found = {}
    for doc in docs[file]:
        if doc["kind"] in ("DaemonSet", "Deployment"):
            for spec in doc["spec"]["template"]["spec"]["containers"]:
                found[spec["name"]] = spec
    return found


def flags(spec: dict) -> dict[str, str]:
    """--flag=value or --flag value -> {flag: value}; a bare flag maps to ''."""
    args, result, index = spec.get("args", []), {}, 0
    while index < len(args):
        arg = args[index]
        if "=" in arg:
            flag, value = arg.split("=", 1)
        elif index + 1 < len(args) and not args[index + 1].startswith("--"):
            flag, value = arg, args[index + 1]
            index += 1
        else:
            flag, value = arg, ""
        result[flag] = value
        index += 1
    return result


def field_env(spec: dict) -> dict[str, str]:
    return {item["name"]: item["valueFrom"]["fieldRef"]["fieldPath"] for item in spec.get("env", [])
            if "valueFrom" in item}


def grants_of_role(docs: list[dict], role: str) -> set[tuple[str, str, str]]:
    [doc] = [doc for doc in docs if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == role]
    return {(group, resource, verb) for rule in doc["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def bound_to(docs: list[dict], role: str) -> set[tuple[str, str]]:
    return {(subject["namespace"], subject["name"]) for doc in docs
            if doc["kind"] == "ClusterRoleBinding" and doc["roleRef"]["name"] == role
            for subject in doc["subjects"]}


# -- the checks ------------------------------------------------------------------------------

def check_images_are_the_built_releases(docs: Docs) -> None:
    versions = build_versions()
    assert set(versions) == set(BUILT_IMAGES.values()), versions
    seen = set()
    for file in docs:
        for spec in containers(docs, file).values():
            image = spec.get("image", "")
            if not image.startswith(IMAGE_PREFIX):
                continue
            name, tag = image[len(IMAGE_PREFIX):].split(":")
            seen.add(name)
            if name in BUILT_IMAGES:
                assert tag == versions[BUILT_IMAGES[name]], (file, image)
            else:
                assert name in UNBUILT_IMAGES, (file, image)
                assert re.fullmatch(r"v[0-9]+\.[0-9]+\.[0-9]+", tag), (file, image)
    assert {"csi-provisioner", "csi-snapshotter", "snapshot-controller"} <= seen


def check_snapshotter_runs_per_node(docs: Docs) -> None:
    plugin = containers(docs, "plugin.yaml")
    snapshotter = plugin["csi-snapshotter"]
    args = flags(snapshotter)
    assert "--node-deployment" in args
    assert not any(flag.startswith("--leader-election") for flag in args)
    assert field_env(snapshotter) == {"NODE_NAME": "spec.nodeName"}
    mounts = {mount["mountPath"]: mount["name"] for mount in snapshotter["volumeMounts"]}
    assert mounts.get("/csi") == "plugin-dir"
    assert args["--csi-address"] == "/csi/csi.sock"


def check_no_central_resizer(docs: Docs) -> None:
    # external-resizer has no per-node mode at the pinned release: a resizer beside one node's
    # plugin would grow every node's claims on that node (plugin.yaml says why).
    for file in docs:
        for name, spec in containers(docs, file).items():
            assert "csi-resizer" not in spec.get("image", ""), (file, name)


def check_snapshotter_rbac(docs: Docs) -> None:
    rbac = docs["rbac.yaml"]
    [account] = [doc["metadata"] for doc in rbac if doc["kind"] == "ServiceAccount"]
    assert bound_to(rbac, "flexvol-csi-snapshotter") == {(account["namespace"], account["name"])}
    grants = grants_of_role(rbac, "flexvol-csi-snapshotter")
    contents = ("snapshot.storage.k8s.io", "volumesnapshotcontents")
    assert {(*contents, verb) for verb in ("get", "list", "watch", "update", "patch")} <= grants
    assert ("snapshot.storage.k8s.io", "volumesnapshotcontents/status", "update") in grants
    assert ("snapshot.storage.k8s.io", "volumesnapshotclasses", "watch") in grants
    # The sidecar never creates or deletes the API objects (the snapshot-controller does).
    assert not {grant for grant in grants if grant[2] in ("create", "delete", "*")} - {
        ("", "events", "create")}
    assert not any(grant[1] == "leases" for grant in grants)


def check_snapshot_class(docs: Docs) -> None:
    from flexvol.csi import names

    [snapshot_class] = docs["snapshotclass.yaml"]
    assert snapshot_class["apiVersion"] == "snapshot.storage.k8s.io/v1"
    assert snapshot_class["kind"] == "VolumeSnapshotClass"
    assert snapshot_class["driver"] == names.DRIVER_NAME
    assert snapshot_class["deletionPolicy"] in ("Delete", "Retain")
    # CreateSnapshot takes no parameters.
    assert not snapshot_class.get("parameters")


def check_snapshot_controller_is_distributed(docs: Docs) -> None:
    file = docs["snapshot-controller.yaml"]
    controller = containers(docs, "snapshot-controller.yaml")["snapshot-controller"]
    args = flags(controller)
    assert "--enable-distributed-snapshotting" in args
    [deployment] = [doc for doc in file if doc["kind"] == "Deployment"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = deployment["metadata"]["namespace"]
    assert bound_to(file, "flexvol-snapshot-controller") == {(namespace, account)}
    grants = grants_of_role(file, "flexvol-snapshot-controller")
    # Its distributed mode watches nodes to mark each content with its volume's node.
    assert {("", "nodes", verb) for verb in ("get", "list", "watch")} <= grants
    for verb in ("create", "delete", "update"):
        assert ("snapshot.storage.k8s.io", "volumesnapshotcontents", verb) in grants
    if args.get("--leader-election") in ("", "true"):
        [role] = [doc for doc in file if doc["kind"] == "Role"]
        assert role["metadata"]["namespace"] == namespace
        assert any("leases" in rule["resources"] and "update" in rule["verbs"] for rule in role["rules"])


def check_registrar_option(docs: Docs) -> None:
    plugin = containers(docs, "plugin.yaml")["plugin"]
    [patch] = docs[REGISTRAR_OPTION.name]
    [daemonset] = [doc for doc in docs["plugin.yaml"] if doc["kind"] == "DaemonSet"]
    assert patch["metadata"] == {key: daemonset["metadata"][key] for key in ("name", "namespace")}
    patched = {spec["name"]: spec for spec in patch["spec"]["template"]["spec"]["containers"]}
    # The same plugin args, only without its own registration.
    args = plugin["args"]
    at = args.index("--registration-dir")
    assert patched["plugin"]["args"] == args[:at] + args[at + 2:]
    registrar = patched["node-driver-registrar"]
    endpoint = flags(plugin)["--endpoint"].removeprefix("unix://")
    assert flags(registrar)["--kubelet-registration-path"] == endpoint
    assert flags(registrar)["--csi-address"] == "/csi/csi.sock"
    volumes = {volume["name"]: volume["hostPath"]["path"]
               for volume in daemonset["spec"]["template"]["spec"]["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in registrar["volumeMounts"]}
    assert mounts["/csi"] + "/csi.sock" == endpoint
    assert mounts["/registration"] == "/var/lib/kubelet/plugins_registry"


CHECKS: list[Callable[[Docs], None]] = [
    check_images_are_the_built_releases, check_snapshotter_runs_per_node, check_no_central_resizer,
    check_snapshotter_rbac, check_snapshot_class, check_snapshot_controller_is_distributed,
    check_registrar_option,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_shipped_manifests_pass(check: Callable[[Docs], None]) -> None:
    check(load())


def _container(docs: Docs, file: str, name: str) -> dict:
    return containers(docs, file)[name]


def _break_tag(docs: Docs) -> None:
    spec = _container(docs, "plugin.yaml", "csi-snapshotter")
    spec["image"] = spec["image"].rsplit(":", 1)[0] + ":v8.5.0"


def _drop_node_deployment(docs: Docs) -> None:
    spec = _container(docs, "plugin.yaml", "csi-snapshotter")
    spec["args"] = [arg for arg in spec["args"] if arg != "--node-deployment"]


def _add_leader_election(docs: Docs) -> None:
    _container(docs, "plugin.yaml", "csi-snapshotter")["args"].append("--leader-election")


def _add_resizer(docs: Docs) -> None:
    [daemonset] = [doc for doc in docs["plugin.yaml"] if doc["kind"] == "DaemonSet"]
    daemonset["spec"]["template"]["spec"]["containers"].append(
        {"name": "csi-resizer", "image": IMAGE_PREFIX + "csi-resizer:v2.3.0", "args": []})


def _drop_status_grant(docs: Docs) -> None:
    [role] = [doc for doc in docs["rbac.yaml"]
              if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == "flexvol-csi-snapshotter"]
    role["rules"] = [rule for rule in role["rules"]
                     if "volumesnapshotcontents/status" not in rule["resources"]]


def _wrong_driver(docs: Docs) -> None:
    docs["snapshotclass.yaml"][0]["driver"] = "hostpath.csi.k8s.io"


def _not_distributed(docs: Docs) -> None:
    spec = _container(docs, "snapshot-controller.yaml", "snapshot-controller")
    spec["args"] = [arg for arg in spec["args"] if arg != "--enable-distributed-snapshotting"]


def _registrar_container_path(docs: Docs) -> None:
    [patch] = docs[REGISTRAR_OPTION.name]
    registrar = patch["spec"]["template"]["spec"]["containers"][1]
    registrar["args"] = ["--csi-address=/csi/csi.sock", "--kubelet-registration-path=/csi/csi.sock"]


BREAKAGES = [(_break_tag, check_images_are_the_built_releases),
             (_drop_node_deployment, check_snapshotter_runs_per_node),
             (_add_leader_election, check_snapshotter_runs_per_node),
             (_add_resizer, check_no_central_resizer),
             (_drop_status_grant, check_snapshotter_rbac),
             (_wrong_driver, check_snapshot_class),
             (_not_distributed, check_snapshot_controller_is_distributed),
             (_registrar_container_path, check_registrar_option)]


@pytest.mark.parametrize(("breakage", "check"), BREAKAGES, ids=lambda item: item.__name__)
def test_checks_fail_on_broken_manifests(breakage: Callable[[Docs], None],
                                         check: Callable[[Docs], None]) -> None:
    docs = copy.deepcopy(load())
    breakage(docs)
    with pytest.raises(AssertionError):
        check(docs)


# -- the e2e suite's host processes ----------------------------------------------------------

BIN = Path("/cache/bin")
SOCKET = Path("/tmp/e2e/plugin/csi.sock")
KUBECONFIG = Path("/tmp/e2e/kubeconfig")


def test_every_sidecar_of_the_plugin_can_run_on_the_host() -> None:
    """A sidecar added to plugin.yaml without a host-process entry would be missing from e2e."""
    shipped = set(containers(load(), "plugin.yaml")) - {"plugin"}
    assert shipped <= set(sidecars.SIDECARS), shipped - set(sidecars.SIDECARS)


@pytest.mark.parametrize("name", sorted(sidecars.SIDECARS))
def test_host_argv_is_the_manifests_but_for_the_documented_differences(name: str) -> None:
    spec = sidecars.container(name)
    env = sidecars.host_env(name, "node-1", "flexvol")
    argv = sidecars.argv(name, bin_dir=BIN, socket=SOCKET, kubeconfig=KUBECONFIG, env=env)
    assert argv[0] == str(BIN / sidecars.SIDECARS[name][1])
    assert argv[-1] == f"--kubeconfig={KUBECONFIG}"
    host, shipped = flags({"args": argv[1:-1]}), flags(spec)
    overrides = sidecars.HOST_ARGS.get(name, {})
    for flag, value in shipped.items():
        if flag == "--csi-address":
            assert host[flag] == str(SOCKET)
        elif flag in overrides:
            assert host.get(flag) == overrides[flag]
        else:
            # $(VAR) expands from the container's env, as the kubelet does.
            assert host[flag] == re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], value), flag
    assert set(host) == {flag for flag in shipped if overrides.get(flag, "") is not None}
    assert not any(flag.startswith("--leader-election") for flag in host)
    # Every env the container gets from the API (NODE_NAME above all) is given to the process.
    assert set(env) == set(field_env(spec)) | {item["name"] for item in spec.get("env", [])}


def test_provisioner_on_the_host_owns_no_capacity_object() -> None:
    env = sidecars.host_env("csi-provisioner", "node-1", "flexvol")
    argv = sidecars.argv("csi-provisioner", bin_dir=BIN, socket=SOCKET, kubeconfig=KUBECONFIG, env=env)
    assert "--capacity-ownerref-level=-1" in argv
    assert {"--node-deployment", "--enable-capacity"} <= set(argv)
    assert env["NODE_NAME"] == "node-1" and env["NAMESPACE"] == "flexvol"


def test_an_override_of_a_flag_the_manifest_dropped_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sidecars.HOST_ARGS, "csi-snapshotter", {"--no-such-flag": "1"})
    with pytest.raises(sidecars.SidecarError, match="--no-such-flag"):
        sidecars.argv("csi-snapshotter", bin_dir=BIN, socket=SOCKET, kubeconfig=KUBECONFIG)


def test_start_without_the_binary_says_what_builds_it(tmp_path: Path) -> None:
    with pytest.raises(sidecars.SidecarError, match=r"csi-sidecars-build\.sh"):
        sidecars.start("liveness-probe", bin_dir=tmp_path, socket=SOCKET, kubeconfig=KUBECONFIG,
                       node_name="node-1", namespace="flexvol", log_dir=tmp_path / "logs")


def test_start_stop_and_log_a_host_process(tmp_path: Path) -> None:
    """A stand-in binary that prints its argv and NODE_NAME, then waits for SIGTERM."""
    fake = tmp_path / "csi-snapshotter"
    fake.write_text('#!/bin/sh\necho "args: $*"\necho "node: $NODE_NAME"\n'
                    'trap "echo stopping; exit 0" TERM\nwhile :; do sleep 0.1; done\n')
    fake.chmod(0o755)
    running = sidecars.start("csi-snapshotter", bin_dir=tmp_path, socket=SOCKET, kubeconfig=KUBECONFIG,
                             node_name="node-1", namespace="flexvol", log_dir=tmp_path / "logs")
    try:
        import time

        deadline = time.monotonic() + 10
        while "node: node-1" not in running.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.alive()
    finally:
        codes = sidecars.stop_all([running], timeout=5)
    assert codes == {"csi-snapshotter": 0}
    log = running.log()
    assert f"args: --csi-address={SOCKET} --node-deployment --kubeconfig={KUBECONFIG}" in log
    assert "stopping" in log
    assert "csi-snapshotter (exited)" in sidecars.collect_logs([running])
