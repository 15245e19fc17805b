"""CSI Identity and Controller without root: request validation and the spec's status codes.

Volumes that need a loop device are made in tests/integration/test_csi_lifecycle.py; here a
volume "exists" as a record (and file) written the way CreateVolume leaves them.
"""

from __future__ import annotations

import os

import grpc
import pytest

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.csi import controller, names
from flexvol.csi.controller import Controller, size_for
from flexvol.csi.identity import Identity
from flexvol.csi.proto import csi_pb2
from tests.helpers.csi import NODE, Aborted, FakeContext, Mode, block_capability, code, mount_capability

Code = grpc.StatusCode
MiB = 1 << 20


@pytest.fixture
def service(config: Config) -> Controller:
    return Controller(config, NODE)


def made(config: Config, name: str, size: int = 64 * MiB, *, fs_type: str = "ext4",
         allocation: str = "thin", csi: bool = True) -> str:
    """A volume as CreateVolume leaves it: formatted record (with the CSI name) and its file."""
    volume_id = names.volume_id_for(name)
    record = state.new_record(volume_id, size, fs_type)
    record.formatted, record.allocation = {"fs_type": fs_type, "uuid": "u"}, allocation
    if csi:
        record.csi_name, record.created_by = name, names.CREATED_BY
    state.save_record(config, record)
    with open(config.backing_file(volume_id), "wb") as handle:
        handle.truncate(size)
    return volume_id


def create(name: str = "pvc-1", *, required: int = 64 * MiB, limit: int = 0,
           capabilities: list | None = None, **parameters: str) -> csi_pb2.CreateVolumeRequest:
    return csi_pb2.CreateVolumeRequest(
        name=name, capacity_range=csi_pb2.CapacityRange(required_bytes=required, limit_bytes=limit),
        volume_capabilities=[mount_capability()] if capabilities is None else capabilities,
        parameters=parameters)


# ---- identity ------------------------------------------------------------------------------

def test_identity_names_the_plugin_and_its_capabilities() -> None:
    identity = Identity()
    info = identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), FakeContext())
    assert info.name == "loop.flexvol.io" and info.vendor_version
    caps = identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest(), FakeContext())
    kinds = {cap.service.type for cap in caps.capabilities if cap.HasField("service")}
    assert kinds == {csi_pb2.PluginCapability.Service.CONTROLLER_SERVICE,
                     csi_pb2.PluginCapability.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS}
    expansion = [cap.volume_expansion.type for cap in caps.capabilities if cap.HasField("volume_expansion")]
    assert expansion == [csi_pb2.PluginCapability.VolumeExpansion.ONLINE]
    assert identity.Probe(csi_pb2.ProbeRequest(), FakeContext()).ready.value is True


# ---- names ---------------------------------------------------------------------------------

def test_valid_names_are_their_own_volume_id() -> None:
    assert names.volume_id_for("pvc-0f3c7a52-9d1e-4c1b-a2b3-1234567890ab") == \
        "pvc-0f3c7a52-9d1e-4c1b-a2b3-1234567890ab"


@pytest.mark.parametrize("name", ["Sanity Test", "a" * 128, "-x", "ÄÖ", "UPPER", "x/y"])
def test_other_names_map_to_a_stable_valid_id(name: str) -> None:
    volume_id = names.volume_id_for(name)
    assert names.is_volume_id(volume_id)
    assert names.volume_id_for(name) == volume_id
    assert volume_id != names.volume_id_for(name + "2")


# ---- capacity ------------------------------------------------------------------------------

def test_size_rounds_up_to_pages_and_the_filesystem_minimum() -> None:
    assert size_for(csi_pb2.CapacityRange(required_bytes=5 * MiB + 1), "ext4") == 5 * MiB + 4096
    assert size_for(csi_pb2.CapacityRange(required_bytes=1), "xfs") == 300 * MiB
    assert size_for(csi_pb2.CapacityRange(), "ext4") == 1 << 30
    assert size_for(csi_pb2.CapacityRange(limit_bytes=10 * MiB), "ext4") == 10 * MiB


def test_a_limit_below_the_filesystem_minimum_is_out_of_range(service: Controller) -> None:
    assert code(service.CreateVolume, create(required=0, limit=100 * MiB, fsType="xfs")) == Code.OUT_OF_RANGE


def test_required_above_limit_is_invalid(service: Controller) -> None:
    assert code(service.CreateVolume, create(required=20 * MiB, limit=10 * MiB)) == Code.INVALID_ARGUMENT


# ---- CreateVolume validation ---------------------------------------------------------------

@pytest.mark.parametrize(("request_", "why"), [
    (create(name=""), "no name"),
    (create(capabilities=[]), "no capability"),
    (create(capabilities=[block_capability(), mount_capability()]), "raw block and filesystem at once"),
    (create(capabilities=[mount_capability(Mode.MULTI_NODE_MULTI_WRITER)]), "multi-node mode"),
    (create(capabilities=[csi_pb2.VolumeCapability(access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))]),
     "no access type"),
    (create(capabilities=[mount_capability(Mode.UNKNOWN)]), "no access mode"),
    (create(capabilities=[mount_capability(fs_type="ntfs")]), "unknown filesystem"),
    (create(capabilities=[mount_capability(flags=("suid",))]), "mount flag off the allowlist"),
    (create(colour="blue"), "unknown parameter"),
    (create(allocation="sparse"), "bad allocation"),
    (create(fsType="zfs"), "bad fsType parameter"),
    (create(fsType="xfs", capabilities=[mount_capability(fs_type="ext4")]), "two filesystems"),
])
def test_create_refuses_bad_requests(service: Controller, config: Config, request_: object, why: str) -> None:
    assert code(service.CreateVolume, request_) == Code.INVALID_ARGUMENT, why
    assert os.listdir(config.volumes_dir) == [], "nothing may be made for a refused request"


def test_create_from_a_snapshot_is_refused(service: Controller) -> None:
    request = create()
    request.volume_content_source.snapshot.snapshot_id = "snap-1"
    assert code(service.CreateVolume, request) == Code.INVALID_ARGUMENT


def test_create_outside_this_node_is_resource_exhausted(service: Controller) -> None:
    request = create()
    request.accessibility_requirements.requisite.add(segments={names.TOPOLOGY_KEY: "node-b"})
    assert code(service.CreateVolume, request) == Code.RESOURCE_EXHAUSTED


def test_repeat_create_returns_the_same_volume(service: Controller, config: Config) -> None:
    volume_id = made(config, "pvc-1")
    request = create("pvc-1", allocation="thin")
    request.accessibility_requirements.requisite.add(segments={names.TOPOLOGY_KEY: NODE})
    reply = service.CreateVolume(request, FakeContext())
    assert reply.volume.volume_id == volume_id
    assert reply.volume.capacity_bytes == 64 * MiB
    assert [dict(item.segments) for item in reply.volume.accessible_topology] == [{names.TOPOLOGY_KEY: NODE}]


@pytest.mark.parametrize(("request_", "why"), [
    (create("pvc-1", required=128 * MiB, allocation="thin"), "bigger"),
    (create("pvc-1", required=1 * MiB, limit=32 * MiB, allocation="thin"), "smaller limit"),
    (create("pvc-1", fsType="btrfs", allocation="thin"), "other filesystem"),
    (create("pvc-1", allocation="thick"), "other allocation"),
])
def test_incompatible_repeat_create_is_already_exists(service: Controller, config: Config,
                                                      request_: object, why: str) -> None:
    made(config, "pvc-1")
    assert code(service.CreateVolume, request_) == Code.ALREADY_EXISTS, why


def test_create_never_takes_over_a_flexvolume_volume(service: Controller, config: Config) -> None:
    made(config, "data-1", csi=False)
    assert code(service.CreateVolume, create("data-1", allocation="thin")) == Code.ALREADY_EXISTS


# ---- DeleteVolume --------------------------------------------------------------------------

def test_delete_needs_an_id(service: Controller) -> None:
    assert code(service.DeleteVolume, csi_pb2.DeleteVolumeRequest()) == Code.INVALID_ARGUMENT


@pytest.mark.parametrize("volume_id", ["never-made", "Not A Flexvol Id", "x" * 200])
def test_delete_of_an_unknown_volume_succeeds(service: Controller, volume_id: str) -> None:
    assert code(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=volume_id)) == Code.OK


def test_delete_removes_the_file_and_record(service: Controller, config: Config) -> None:
    volume_id = made(config, "pvc-1")
    assert code(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=volume_id)) == Code.OK
    assert not os.path.exists(config.backing_file(volume_id))
    assert not os.path.exists(config.record_path(volume_id))
    assert code(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=volume_id)) == Code.OK


def test_delete_of_a_flexvolume_volume_is_refused(service: Controller, config: Config) -> None:
    volume_id = made(config, "data-1", csi=False)
    assert code(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=volume_id)) == \
        Code.FAILED_PRECONDITION
    assert os.path.exists(config.backing_file(volume_id))


def test_a_busy_volume_is_aborted(service: Controller, config: Config,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    volume_id = made(config, "pvc-1")
    import threading

    monkeypatch.setattr(controller, "LOCK_WAIT", 0.05)
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        # Another thread, as another RPC would be: the lock is re-entrant only in its holder.
        with state.VolumeLock(config, volume_id):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(5)
        assert code(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id=volume_id)) == Code.ABORTED
        assert code(service.CreateVolume, create("pvc-1", allocation="thin")) == Code.ABORTED
    finally:
        release.set()
        thread.join(10)
    assert os.path.exists(config.backing_file(volume_id))


# ---- ValidateVolumeCapabilities, capabilities ------------------------------------------------

def validate(volume_id: str,
             *capabilities: csi_pb2.VolumeCapability) -> csi_pb2.ValidateVolumeCapabilitiesRequest:
    return csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id=volume_id, volume_capabilities=capabilities)


def test_validate_status_codes(service: Controller, config: Config) -> None:
    volume_id = made(config, "pvc-1")
    assert code(service.ValidateVolumeCapabilities, validate("", mount_capability())) == Code.INVALID_ARGUMENT
    assert code(service.ValidateVolumeCapabilities, validate(volume_id)) == Code.INVALID_ARGUMENT
    assert code(service.ValidateVolumeCapabilities, validate("nope", mount_capability())) == Code.NOT_FOUND


def test_validate_confirms_only_what_is_served(service: Controller, config: Config) -> None:
    volume_id = made(config, "pvc-1")
    good = service.ValidateVolumeCapabilities(validate(volume_id, mount_capability()), FakeContext())
    assert good.HasField("confirmed") and len(good.confirmed.volume_capabilities) == 1
    for capability in (block_capability(), mount_capability(Mode.MULTI_NODE_READER_ONLY),
                       mount_capability(fs_type="xfs")):
        reply = service.ValidateVolumeCapabilities(validate(volume_id, capability), FakeContext())
        assert not reply.HasField("confirmed") and reply.message


def test_controller_capabilities(service: Controller) -> None:
    reply = service.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest(), FakeContext())
    RPC = csi_pb2.ControllerServiceCapability.RPC
    assert [cap.rpc.type for cap in reply.capabilities] == \
        [RPC.CREATE_DELETE_VOLUME, RPC.LIST_VOLUMES, RPC.GET_CAPACITY, RPC.EXPAND_VOLUME]


# ---- GetCapacity, ListVolumes ----------------------------------------------------------------

def test_capacity_is_the_budgets_available_figure(service: Controller, config: Config) -> None:
    from flexvol.core import budget

    made(config, "pvc-1")
    reply = service.GetCapacity(csi_pb2.GetCapacityRequest(), FakeContext())
    # Others write to the same filesystem meanwhile: the two readings agree only roughly.
    assert reply.available_capacity > 0
    assert abs(reply.available_capacity - budget.measure(config).available_bytes) < 256 * MiB
    assert reply.maximum_volume_size.value == reply.available_capacity
    assert reply.minimum_volume_size.value == MiB  # ext4, the default
    xfs = service.GetCapacity(csi_pb2.GetCapacityRequest(parameters={"fsType": "xfs"}), FakeContext())
    assert xfs.minimum_volume_size.value == 300 * MiB


def test_capacity_elsewhere_or_for_unserved_capabilities_is_zero(service: Controller) -> None:
    other_node = csi_pb2.GetCapacityRequest(
        accessible_topology=csi_pb2.Topology(segments={names.TOPOLOGY_KEY: "node-b"}))
    both = csi_pb2.GetCapacityRequest(volume_capabilities=[block_capability(), mount_capability()])
    shared = csi_pb2.GetCapacityRequest(volume_capabilities=[mount_capability(Mode.MULTI_NODE_MULTI_WRITER)])
    for request in (other_node, both, shared):
        assert service.GetCapacity(request, FakeContext()).available_capacity == 0
    block = service.GetCapacity(csi_pb2.GetCapacityRequest(volume_capabilities=[block_capability()]),
                                FakeContext())
    assert block.available_capacity > 0 and block.minimum_volume_size.value == 4096
    assert code(service.GetCapacity, csi_pb2.GetCapacityRequest(parameters={"colour": "blue"})) == \
        Code.INVALID_ARGUMENT


def listed(service: Controller, max_entries: int = 0, token: str = "") -> tuple[list[str], str]:
    reply = service.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=max_entries, starting_token=token),
                                FakeContext())
    return [entry.volume.volume_id for entry in reply.entries], reply.next_token


def test_list_pages_through_the_csi_volumes_only(service: Controller, config: Config) -> None:
    for name in ("pvc-c", "pvc-a", "pvc-b"):
        made(config, name)
    made(config, "data-1", csi=False)
    assert listed(service) == (["pvc-a", "pvc-b", "pvc-c"], "")
    first, token = listed(service, 2)
    assert first == ["pvc-a", "pvc-b"] and token
    # A volume deleted between pages does not shift the next page.
    assert code(service.DeleteVolume, csi_pb2.DeleteVolumeRequest(volume_id="pvc-a")) == Code.OK
    assert listed(service, 2, token) == (["pvc-c"], "")


def test_list_refuses_bad_paging(service: Controller) -> None:
    request = csi_pb2.ListVolumesRequest(starting_token="invalid-token")
    assert code(service.ListVolumes, request) == Code.ABORTED
    assert code(service.ListVolumes, csi_pb2.ListVolumesRequest(max_entries=-1)) == Code.INVALID_ARGUMENT


def test_an_unexpected_error_is_internal_with_its_message(service: Controller,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(controller, "parse_parameters", broken)
    with pytest.raises(Aborted) as caught:
        service.CreateVolume(create(), FakeContext())
    assert caught.value.code == Code.INTERNAL and "disk on fire" in caught.value.details
