"""The CSI wire types: generated modules current, spec field numbers, and no grpc on the
FlexVolume driver's per-call path."""

from __future__ import annotations

import filecmp
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from flexvol.csi.proto import csi_pb2

REPO = Path(__file__).resolve().parents[2]
GENERATED = ("csi_pb2.py", "csi_pb2_grpc.py", "registration_pb2.py", "registration_pb2_grpc.py")


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools not installed")
def test_checked_in_modules_match_the_proto() -> None:
    """Regenerating from csi.proto gives the checked-in modules (run scripts/csi_proto.sh)."""
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([str(REPO / "scripts" / "csi_proto.sh"), out], capture_output=True,
                              text=True, env={**os.environ, "PYTHON": sys.executable}, check=False)
        assert done.returncode == 0, done.stderr
        for name in GENERATED:
            fresh = Path(out) / "flexvol" / "csi" / "proto" / name
            assert filecmp.cmp(fresh, REPO / "flexvol" / "csi" / "proto" / name, shallow=False), \
                f"{name} is stale: run scripts/csi_proto.sh and commit the result"


def _numbers(message: type) -> dict[str, int]:
    return {field.name: field.number for field in message.DESCRIPTOR.fields}


def test_field_numbers_are_the_specs() -> None:
    """A few messages checked field by field against CSI spec v1.x (a wrong number is silent)."""
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"
    assert _numbers(csi_pb2.CreateVolumeRequest) == {
        "name": 1, "capacity_range": 2, "volume_capabilities": 3, "parameters": 4, "secrets": 5,
        "volume_content_source": 6, "accessibility_requirements": 7, "mutable_parameters": 8}
    assert _numbers(csi_pb2.Volume) == {"capacity_bytes": 1, "volume_id": 2, "volume_context": 3,
                                        "content_source": 4, "accessible_topology": 5}
    assert _numbers(csi_pb2.NodePublishVolumeRequest) == {
        "volume_id": 1, "publish_context": 2, "staging_target_path": 3, "target_path": 4,
        "volume_capability": 5, "readonly": 6, "secrets": 7, "volume_context": 8}
    assert _numbers(csi_pb2.NodeStageVolumeRequest) == {
        "volume_id": 1, "publish_context": 2, "staging_target_path": 3, "volume_capability": 4,
        "secrets": 5, "volume_context": 6}
    assert _numbers(csi_pb2.NodeGetInfoResponse) == {"node_id": 1, "max_volumes_per_node": 2,
                                                     "accessible_topology": 3}
    assert _numbers(csi_pb2.VolumeCapability) == {"block": 1, "mount": 2, "access_mode": 3}
    assert _numbers(csi_pb2.VolumeCapability.MountVolume) == {"fs_type": 1, "mount_flags": 2,
                                                              "volume_mount_group": 3}
    assert _numbers(csi_pb2.ControllerExpandVolumeRequest) == {
        "volume_id": 1, "capacity_range": 2, "secrets": 3, "volume_capability": 4}
    assert _numbers(csi_pb2.ControllerExpandVolumeResponse) == {"capacity_bytes": 1,
                                                                "node_expansion_required": 2}
    assert _numbers(csi_pb2.NodeExpandVolumeRequest) == {
        "volume_id": 1, "volume_path": 2, "capacity_range": 3, "staging_target_path": 4,
        "volume_capability": 5, "secrets": 6}
    assert _numbers(csi_pb2.NodeExpandVolumeResponse) == {"capacity_bytes": 1}
    services = {service.full_name for service in csi_pb2.DESCRIPTOR.services_by_name.values()}
    assert services == {"csi.v1.Identity", "csi.v1.Controller", "csi.v1.Node"}


def test_registration_field_numbers_are_the_kubelets() -> None:
    from flexvol.csi.proto import registration_pb2

    assert registration_pb2.DESCRIPTOR.package == "pluginregistration"
    assert _numbers(registration_pb2.PluginInfo) == {"type": 1, "name": 2, "endpoint": 3,
                                                     "supported_versions": 4}
    assert _numbers(registration_pb2.RegistrationStatus) == {"plugin_registered": 1, "error": 2}


DRIVER_PATH = """
import sys
from flexvol.core import config
from flexvol.flex import verbs
from flexvol.core.journal import CallInfo
for name in ("core.operations", "core.backing", "core.loop", "core.formatting", "core.mounting",
             "core.growth", "core.state", "core.options", "core.mountdir", "core.loopdev", "core.budget",
             "core.undo", "core.guard", "core.kernel", "core.filesystems", "core.quantity",
             "flex.protocol", "core.journal", "core.runner"):
    __import__("flexvol." + name)
reply = verbs.dispatch(config.Config(sys.argv[1]), ["init"], CallInfo("init"))
assert reply.status == "Success", reply
heavy = sorted(name for name in sys.modules
               if name.split(".")[0] == "grpc" or name.startswith(("google.protobuf", "flexvol.csi")))
print(",".join(heavy))
"""


def test_driver_call_path_never_imports_grpc(tmp_path: Path) -> None:
    """The FlexVolume driver's per-call modules load neither grpc, protobuf nor the CSI front end."""
    done = subprocess.run([sys.executable, "-c", DRIVER_PATH, str(tmp_path)], capture_output=True,
                          text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_toolkit_commands_load_grpc_only_for_csi() -> None:
    """Loading the CLI's commands (every toolkit call does) does not import grpc."""
    code = ("import sys\nfrom flexvol.cli.main import load_commands\nload_commands()\n"
            "print(any(name.split('.')[0] == 'grpc' for name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
