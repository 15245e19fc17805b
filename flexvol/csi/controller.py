"""The CSI Controller service: CreateVolume, DeleteVolume, ValidateVolumeCapabilities and
ControllerGetCapabilities, for the volumes of this node's pool.

Each node runs its own controller (the external-provisioner's --node-deployment): a volume is
made in the pool of the node that serves the call, and its topology pins it there. CreateVolume
makes the volume as `flexvol create` does (volume.py steps under the volume's lock: file,
record, loop, format once, reserve), then records the CSI name in the record.
"""

from __future__ import annotations

import os

from google.protobuf import wrappers_pb2

from flexvol.core import budget, layout, loop, state
from flexvol.core.config import Config
from flexvol.core.errors import InvalidInput, Refused
from flexvol.core.filesystems import DEFAULT_FS_TYPE, FILESYSTEMS
from flexvol.core.operations import in_use
from flexvol.core.options import ALLOCATION, DEFAULT_SIZE, SIZE_ALIGNMENT, THICK, VolumeSpec, check_allocation
from flexvol.core.undo import Undo
from flexvol.csi import capability, expand, names, records, store
from flexvol.csi.proto import csi_pb2, csi_pb2_grpc
from flexvol.csi.status import Code, CsiError, invalid, require, rpc

# A CSI call waits this long for a volume's lock, then answers ABORTED and the CO retries.
LOCK_WAIT = 2.0
FS_TYPE_PARAMETER = "fsType"
PARAMETERS = (FS_TYPE_PARAMETER, ALLOCATION)
# The CO's own keys (claim and PV names, secrets' names): information, never a setting.
CO_PREFIX = "csi.storage.k8s.io/"

RPC = csi_pb2.ControllerServiceCapability.RPC
# ListVolumes page tokens: this prefix and the first volume id of the next page.
TOKEN_PREFIX = "from:"


def parse_parameters(parameters: dict[str, str]) -> tuple[str, str]:
    """(fsType, allocation) from a StorageClass's parameters; anything else INVALID_ARGUMENT."""
    unknown = sorted(key for key in parameters if key not in PARAMETERS and not key.startswith(CO_PREFIX))
    if unknown:
        raise invalid(f"unknown parameter(s) {', '.join(repr(key[:60]) for key in unknown)}: "
                      f"flexvol takes {' and '.join(PARAMETERS)}")
    fs_type = parameters.get(FS_TYPE_PARAMETER, "")
    if fs_type and fs_type not in FILESYSTEMS:
        raise invalid(f"parameter fsType {fs_type[:40]!r} is not supported: use one of "
                      f"{', '.join(sorted(FILESYSTEMS))}")
    try:
        allocation = check_allocation(parameters.get(ALLOCATION, ""))
    except InvalidInput as error:
        raise invalid(str(error)) from None
    return fs_type, allocation


def choose_fs_type(parameter: str, capabilities: list[csi_pb2.VolumeCapability]) -> str:
    """The parameter's fsType, else the capabilities' (all alike), else the default."""
    asked = {item.mount.fs_type for item in capabilities if item.mount.fs_type}
    if parameter:
        asked.add(parameter)
    if len(asked) > 1:
        raise invalid(f"the request asks for several filesystems ({', '.join(sorted(asked))}): "
                      "a volume has one")
    return asked.pop() if asked else DEFAULT_FS_TYPE


def size_for(capacity: csi_pb2.CapacityRange, fs_type: str) -> int:
    """The size to make: at least required_bytes and what fs_type needs, in whole 4 KiB pages,
    at most limit_bytes (OUT_OF_RANGE when no size fits); 1 GiB when neither bound is given."""
    required, limit = capacity.required_bytes, capacity.limit_bytes
    if required < 0 or limit < 0:
        raise invalid("capacity_range bytes must not be negative")
    if limit and required > limit:
        raise invalid(f"capacity_range asks for at least {required} bytes but at most {limit}")
    minimum = FILESYSTEMS[fs_type].min_bytes if fs_type else SIZE_ALIGNMENT  # "": raw block
    size = required or (min(DEFAULT_SIZE, limit) if limit else DEFAULT_SIZE)
    size = -(-max(size, minimum) // SIZE_ALIGNMENT) * SIZE_ALIGNMENT
    if limit and size > limit:
        size = limit // SIZE_ALIGNMENT * SIZE_ALIGNMENT
        if size < max(required, minimum):
            raise CsiError(Code.OUT_OF_RANGE,
                           f"no size of whole 4 KiB pages fits {required}..{limit} bytes and the "
                           f"{minimum} bytes {fs_type or 'a volume'} needs")
    return size


def page_start(max_entries: int, token: str) -> str:
    """The first id of the page a List call's token names ("" for the first page): a token
    names an id, not an offset, so an entry deleted between pages never shifts the ones after
    it; a token this plugin never gave out is ABORTED, as the spec names."""
    if max_entries < 0:
        raise invalid("max_entries must not be negative")
    if not token:
        return ""
    start = token.removeprefix(TOKEN_PREFIX)
    if not token.startswith(TOKEN_PREFIX) or not names.is_volume_id(start):
        raise CsiError(Code.ABORTED, f"starting_token {token[:80]!r} is not one this plugin gave out")
    return start


class Controller(csi_pb2_grpc.ControllerServicer):
    def __init__(self, config: Config, node_id: str) -> None:
        self.config = config
        self.node_id = node_id

    def _topology(self) -> csi_pb2.Topology:
        return csi_pb2.Topology(segments={names.TOPOLOGY_KEY: self.node_id})

    def _check_topology(self, requirement: csi_pb2.TopologyRequirement) -> None:
        """A volume can only be made here: a requisite list must include this node."""
        if not requirement.requisite:
            return
        ours = {names.TOPOLOGY_KEY: self.node_id}
        if not any(dict(item.segments) == ours for item in requirement.requisite):
            raise CsiError(Code.RESOURCE_EXHAUSTED,
                           f"this plugin makes volumes on node {self.node_id} only, which the "
                           "requisite topology does not include")

    def _volume(self, record: state.Record) -> csi_pb2.Volume:
        context = {} if records.is_block(record) else {FS_TYPE_PARAMETER: records.fs_type(record)}
        return csi_pb2.Volume(
            volume_id=record.volume_id, capacity_bytes=int(record.size_bytes or 0),
            volume_context=context,
            accessible_topology=[self._topology()])

    @rpc
    def CreateVolume(self, request: csi_pb2.CreateVolumeRequest,
                     context: object) -> csi_pb2.CreateVolumeResponse:
        name = require(request.name, "volume name")
        capabilities = list(request.volume_capabilities)
        capability.check_all(capabilities)
        if request.HasField("volume_content_source"):
            raise invalid("volumes from a snapshot or a clone are not supported yet")
        fs_parameter, allocation = parse_parameters(dict(request.parameters))
        # A raw block volume has no filesystem: a StorageClass's fsType is for its other claims.
        block = capability.access_type(capabilities)
        fs_type = "" if block else choose_fs_type(fs_parameter, capabilities)
        size = size_for(request.capacity_range, fs_type)
        self._check_topology(request.accessibility_requirements)
        volume_id = names.volume_id_for(name)
        config = self.config
        state.ensure_dirs(config)
        with state.VolumeLock(config, volume_id, wait=LOCK_WAIT):
            record = state.load_record(config, volume_id)
            if record is not None or os.path.exists(config.backing_file(volume_id)):
                self._check_same(record, name, request.capacity_range, fs_type, allocation)
                assert record is not None
                # A raw block volume is made once its file is (never formatted).
                made = block or record.formatted
                finished = made and (allocation != THICK or record.reserved)
                if finished and os.path.exists(config.backing_file(volume_id)):
                    # A create killed after formatting left its loop device: free it unless a
                    # mount uses it (one sysfs read when nothing is attached).
                    loop.release_loop(config, volume_id)
                    return csi_pb2.CreateVolumeResponse(volume=self._volume(record))
                # A create killed half-way: the same steps finish it (each is idempotent).
                size = int(record.size_bytes or size)
            else:
                self._check_budget(size, volume_id)
            spec = VolumeSpec(volume_id, size_bytes=size, size_given=True, fs_type=fs_type,
                              allocation=allocation)
            record = self._make(spec, name, block)
        return csi_pb2.CreateVolumeResponse(volume=self._volume(record))

    def _check_same(self, record: state.Record | None, name: str, capacity: csi_pb2.CapacityRange,
                    fs_type: str, allocation: str) -> None:
        """ALREADY_EXISTS unless the existing volume is this name's and fits the request."""
        if record is None or record.csi_name != name:
            raise CsiError(Code.ALREADY_EXISTS,
                           f"volume id {names.volume_id_for(name)} is taken by a volume not made "
                           f"for CSI name {name!r} (by the FlexVolume driver, 'flexvol create', or "
                           "another CSI name)")
        size = int(record.size_bytes or 0)
        problems = []
        if size < capacity.required_bytes or (capacity.limit_bytes and size > capacity.limit_bytes):
            problems.append(f"its size is {size} bytes")
        if records.is_block(record) != (not fs_type):
            problems.append("it is a raw block volume" if records.is_block(record) else
                            f"it is a filesystem volume ({records.fs_type(record)})")
        elif fs_type and records.fs_type(record) != fs_type:
            problems.append(f"its filesystem is {records.fs_type(record)}")
        if record.allocation and record.allocation != allocation:
            problems.append(f"it is {record.allocation}")
        if problems:
            raise CsiError(Code.ALREADY_EXISTS, f"volume {name!r} exists and differs from this "
                           f"request: {'; '.join(problems)}")

    def _check_budget(self, size: int, volume_id: str) -> None:
        try:
            budget.check(self.config, size, volume_id)
        except InvalidInput as error:
            raise CsiError(Code.OUT_OF_RANGE, str(error)) from None
        except Refused as error:
            raise CsiError(Code.RESOURCE_EXHAUSTED, str(error)) from None

    def _make(self, spec: VolumeSpec, name: str, block: bool) -> dict:
        """The volume made (store.make), its loop device released."""
        config = self.config
        undo = Undo()
        try:
            record, _device = store.make(config, spec, name, undo, block=block)
        except BaseException:
            undo.rollback()
            raise
        finally:
            loop.release_loop(config, spec.volume_id)
        undo.commit()
        return state.load_record(config, spec.volume_id) or record

    @rpc
    def DeleteVolume(self, request: csi_pb2.DeleteVolumeRequest,
                     context: object) -> csi_pb2.DeleteVolumeResponse:
        volume_id = require(request.volume_id, "volume id")
        config = self.config
        # An id flexvol never gives out names no volume: nothing to delete (idempotent).
        if not names.is_volume_id(volume_id) or not records.exists(config, volume_id):
            return csi_pb2.DeleteVolumeResponse()
        with state.VolumeLock(config, volume_id, wait=LOCK_WAIT):
            record = state.load_record(config, volume_id)
            if record is None and not os.path.exists(config.backing_file(volume_id)):
                return csi_pb2.DeleteVolumeResponse()
            if record is None or not record.csi_name:
                raise CsiError(Code.FAILED_PRECONDITION,
                               f"volume {volume_id} was not made through CSI (the FlexVolume driver "
                               "or 'flexvol create' made it); delete it with 'flexvol delete'")
            reasons = in_use(config, volume_id)
            if reasons:
                raise CsiError(Code.FAILED_PRECONDITION,
                               f"volume {volume_id} is in use: {'; '.join(reasons)}; unpublish and "
                               "unstage it first")
            store.remove(config, volume_id)
        return csi_pb2.DeleteVolumeResponse()

    @rpc
    def ValidateVolumeCapabilities(self, request: csi_pb2.ValidateVolumeCapabilitiesRequest,
                                   context: object) -> csi_pb2.ValidateVolumeCapabilitiesResponse:
        volume_id = require(request.volume_id, "volume id")
        capabilities = list(request.volume_capabilities)
        if not capabilities:
            raise invalid("volume capabilities are missing")
        record = records.known(self.config, volume_id)
        for item in capabilities:
            reason = capability.unsupported(item)
            if not reason:
                try:
                    records.check_access(record, volume_id, capability.is_block(item), item.mount.fs_type)
                except CsiError as error:
                    reason = error.message
            if reason:
                return csi_pb2.ValidateVolumeCapabilitiesResponse(message=reason)
        try:
            parse_parameters(dict(request.parameters))
        except CsiError as error:
            return csi_pb2.ValidateVolumeCapabilitiesResponse(message=error.message)
        confirmed = csi_pb2.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=dict(request.volume_context), volume_capabilities=capabilities,
            parameters=dict(request.parameters))
        return csi_pb2.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    @rpc
    def GetCapacity(self, request: csi_pb2.GetCapacityRequest,
                    context: object) -> csi_pb2.GetCapacityResponse:
        """What a new volume may take from this node's pool: the budget's published figure
        (budget.Pool.available_bytes, the same the driver enforces); 0 for a capability or a
        topology this plugin cannot serve."""
        fs_parameter, _allocation = parse_parameters(dict(request.parameters))
        capabilities = list(request.volume_capabilities)
        segments = dict(request.accessible_topology.segments)
        if any(capability.unsupported(item) for item in capabilities) or (
                segments and segments != {names.TOPOLOGY_KEY: self.node_id}) or (
                len({capability.is_block(item) for item in capabilities}) > 1):
            return csi_pb2.GetCapacityResponse(available_capacity=0)
        if capabilities and capability.access_type(capabilities):
            minimum = SIZE_ALIGNMENT  # a raw block volume: no filesystem's minimum
        else:
            minimum = FILESYSTEMS[choose_fs_type(fs_parameter, capabilities)].min_bytes
        available = budget.measure(self.config).available_bytes
        return csi_pb2.GetCapacityResponse(
            available_capacity=available,
            maximum_volume_size=wrappers_pb2.Int64Value(value=available),
            minimum_volume_size=wrappers_pb2.Int64Value(value=minimum))

    @rpc
    def ListVolumes(self, request: csi_pb2.ListVolumesRequest,
                    context: object) -> csi_pb2.ListVolumesResponse:
        """The volumes made through CSI, by volume id. A token names the first id of the next
        page, so a volume deleted between pages never shifts the ones after it."""
        start = page_start(request.max_entries, request.starting_token)
        found = [record for record in _csi_records(self.config) if record.volume_id >= start]
        limit = request.max_entries or len(found)
        page, rest = found[:limit], found[limit:]
        return csi_pb2.ListVolumesResponse(
            entries=[csi_pb2.ListVolumesResponse.Entry(volume=self._volume(record)) for record in page],
            next_token=TOKEN_PREFIX + rest[0].volume_id if rest else "")

    @rpc
    def ControllerGetCapabilities(self, request: csi_pb2.ControllerGetCapabilitiesRequest,
                                  context: object) -> csi_pb2.ControllerGetCapabilitiesResponse:
        return csi_pb2.ControllerGetCapabilitiesResponse(capabilities=[
            csi_pb2.ControllerServiceCapability(rpc=RPC(type=kind))
            for kind in (RPC.CREATE_DELETE_VOLUME, RPC.LIST_VOLUMES, RPC.GET_CAPACITY,
                         RPC.EXPAND_VOLUME)])

    @rpc
    def ControllerExpandVolume(self, request: csi_pb2.ControllerExpandVolumeRequest,
                               context: object) -> csi_pb2.ControllerExpandVolumeResponse:
        return expand.controller_expand(self.config, request)


def _csi_records(config: Config) -> list[state.Record]:
    """The records of the volumes made through CSI, sorted by volume id; unreadable ones skipped
    (the toolkit's doctor reports them)."""
    skip = lambda path, error: None  # noqa: E731
    return [record for record in layout.iter_records(config, on_corrupt=skip) if record.csi_name]
