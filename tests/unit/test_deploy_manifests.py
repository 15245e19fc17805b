"""The deploy/ manifests agree with the code: RBAC grants exactly the calls each side makes,
container arguments are options the commands have, names match the provisioner's."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml

from flexvol.cli import provision
from flexvol.cli.main import load_commands
from flexvol.provisioning import names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

# (API group, resource, verb) for each call of the Cluster interface the side makes; a watch
# needs "watch" (and the list before it "list").
PROVISIONER_CALLS = {
    ("", "persistentvolumeclaims", "list"),     # list_claims
    ("", "persistentvolumeclaims", "watch"),    # watch_claims
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
    return [doc for path in sorted(DEPLOY.rglob("*.yaml")) for doc in documents(path)]


def granted(account: str) -> set[tuple[str, str, str]]:
    docs = everything()
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
