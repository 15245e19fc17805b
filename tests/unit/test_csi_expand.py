"""CSI expansion and volume_mount_group without root: sizes, validation and status codes (the
real growth and mounts are in tests/integration/test_csi_expand.py)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.csi import access
from flexvol.csi.controller import Controller
from flexvol.csi.expand import target_size
from flexvol.csi.node import Node
from flexvol.csi.proto import csi_pb2
from flexvol.csi.status import CsiError
from tests.helpers.csi import code, mount_capability

Code = grpc.StatusCode
MiB = 1 << 20


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = Config(str(tmp_path / "root"))
    state.ensure_dirs(config)
    return config


def capacity(required: int, limit: int = 0) -> csi_pb2.CapacityRange:
    return csi_pb2.CapacityRange(required_bytes=required, limit_bytes=limit)


@pytest.mark.parametrize(("required", "limit", "current", "size"), [
    (128 * MiB, 0, 64 * MiB, 128 * MiB),
    (128 * MiB + 1, 0, 64 * MiB, 128 * MiB + 4096),       # whole 4 KiB pages
    (100 * MiB + 1, 101 * MiB, 64 * MiB, 100 * MiB + 4096),
    (32 * MiB, 0, 64 * MiB, 64 * MiB),                     # never shrinks: OK at its size
    (0, 0, 64 * MiB, 64 * MiB),                            # no range: the file's own size
])
def test_target_size(required: int, limit: int, current: int, size: int) -> None:
    assert target_size(capacity(required, limit), current) == size


@pytest.mark.parametrize(("required", "limit", "wanted"), [
    (128 * MiB, 96 * MiB, Code.INVALID_ARGUMENT),
    (-1, 0, Code.INVALID_ARGUMENT),
    (80 * MiB + 1, 80 * MiB + 1, Code.OUT_OF_RANGE),      # no whole page fits
])
def test_target_size_refuses(required: int, limit: int, wanted: grpc.StatusCode) -> None:
    with pytest.raises(CsiError) as caught:
        target_size(capacity(required, limit), 64 * MiB)
    assert caught.value.code == wanted


def test_expansion_requests_are_validated_before_anything(config: Config) -> None:
    controller, node = Controller(config, "node-a"), Node(config, "node-a")
    expand = controller.ControllerExpandVolume
    assert code(expand, csi_pb2.ControllerExpandVolumeRequest(capacity_range=capacity(MiB))) == \
        Code.INVALID_ARGUMENT
    assert code(expand, csi_pb2.ControllerExpandVolumeRequest(volume_id="pvc-a")) == Code.INVALID_ARGUMENT
    assert code(expand, csi_pb2.ControllerExpandVolumeRequest(
        volume_id="pvc-a", capacity_range=capacity(MiB))) == Code.NOT_FOUND
    grow = node.NodeExpandVolume
    assert code(grow, csi_pb2.NodeExpandVolumeRequest(volume_path="/tmp/x")) == Code.INVALID_ARGUMENT
    assert code(grow, csi_pb2.NodeExpandVolumeRequest(volume_id="pvc-a")) == Code.INVALID_ARGUMENT
    assert code(grow, csi_pb2.NodeExpandVolumeRequest(volume_id="pvc-a", volume_path="some/path")) == \
        Code.NOT_FOUND
    assert not list(Path(config.locks_dir).iterdir()), "no lock file for a volume never heard of"


@pytest.mark.parametrize(("group", "gid"), [("", None), ("0", 0), ("2345", 2345), ("4294967294", 4294967294)])
def test_mount_group_is_a_numeric_gid(group: str, gid: int | None) -> None:
    wanted = mount_capability()
    wanted.mount.volume_mount_group = group
    assert access.mount_group(wanted) == gid


@pytest.mark.parametrize("group", ["staff", "-1", "4294967295", "1e3", " 12", "\u00b2", "\u0663"])
def test_mount_group_refuses_what_is_no_gid(group: str) -> None:
    wanted = mount_capability()
    wanted.mount.volume_mount_group = group
    with pytest.raises(CsiError) as caught:
        access.mount_group(wanted)
    assert caught.value.code == Code.INVALID_ARGUMENT and "numeric group id" in caught.value.message
