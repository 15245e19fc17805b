"""Volume expansion over CSI, on the core's growth steps (core/growth.py).

ControllerExpandVolume grows the backing file within the pool's budget (a thick volume's new
part reserved) and flags a filesystem volume `growing`; NodeExpandVolume then refreshes the loop
device's capacity and grows the staged or published filesystem online (xfs_growfs, resize2fs,
btrfs filesystem resize). A block volume has no filesystem: only its device is refreshed. A
volume grown while nobody stages it is finished offline by its next NodeStageVolume
(growth.finish_growth), as the FlexVolume driver's next mount does.
"""

from __future__ import annotations

import os

from flexvol.core import backing, devicenode, growth, kernel, loop, mounting, state
from flexvol.core.config import Config
from flexvol.core.errors import InvalidInput, Refused
from flexvol.core.faults import checkpoint
from flexvol.core.options import SIZE_ALIGNMENT
from flexvol.csi import capability, names, records
from flexvol.csi.proto import csi_pb2
from flexvol.csi.status import Code, CsiError, invalid, require

LOCK_WAIT = 2.0


def target_size(capacity: csi_pb2.CapacityRange, current: int) -> int:
    """The size to grow to: required_bytes in whole 4 KiB pages, never below `current` (a volume
    never shrinks; one already as big answers OK), at most limit_bytes (OUT_OF_RANGE)."""
    required, limit = capacity.required_bytes, capacity.limit_bytes
    if required < 0 or limit < 0:
        raise invalid("capacity_range bytes must not be negative")
    if limit and required > limit:
        raise invalid(f"capacity_range asks for at least {required} bytes but at most {limit}")
    size = -(-required // SIZE_ALIGNMENT) * SIZE_ALIGNMENT
    if limit and size > limit:
        size = limit // SIZE_ALIGNMENT * SIZE_ALIGNMENT
        if size < required:
            raise CsiError(Code.OUT_OF_RANGE, f"no size of whole 4 KiB pages fits {required}..{limit} bytes")
    if size <= current:
        return current
    return size


def _is_block(request: object) -> bool:
    """True when the request's capability says raw block; a mount capability is checked."""
    if not request.HasField("volume_capability"):  # type: ignore[attr-defined]
        return False
    wanted = request.volume_capability  # type: ignore[attr-defined]
    if wanted.WhichOneof("access_type") == "block":
        return True
    capability.check(wanted)
    return False


def _grow_file(config: Config, record: state.Record, size: int) -> None:
    """growth.grow_file with the spec's codes: past the pool's size OUT_OF_RANGE, past its room
    (or a thick reservation that does not fit) RESOURCE_EXHAUSTED."""
    try:
        growth.grow_file(config, record, size)
    except InvalidInput as error:
        raise CsiError(Code.OUT_OF_RANGE, str(error)) from None
    except Refused as error:
        raise CsiError(Code.RESOURCE_EXHAUSTED, str(error)) from None


def _refresh_capacity(device: str, size: int) -> None:
    if (kernel.block_size_bytes(device) or 0) < size:
        loop.set_loop_capacity(device)
        checkpoint("loop-capacity-set")


def controller_expand(config: Config, request: csi_pb2.ControllerExpandVolumeRequest
                      ) -> csi_pb2.ControllerExpandVolumeResponse:
    volume_id = names.volume_id_for(require(request.volume_id, "volume id"))
    if not request.HasField("capacity_range"):
        raise invalid("capacity range is missing")
    block = _is_block(request)
    records.known(config, volume_id)
    with state.VolumeLock(config, volume_id, wait=LOCK_WAIT):
        record = records.known(config, volume_id)
        path = config.backing_file(volume_id)
        try:
            current = os.stat(path).st_size
        except FileNotFoundError:
            raise CsiError(Code.NOT_FOUND, f"volume {volume_id} has no backing file ({path})") from None
        size = target_size(request.capacity_range, current)
        _grow_file(config, record, size)
        block = block or not record.formatted
        if block:
            # No filesystem to catch up: the volume is its file, and this node's loop device
            # (the controller runs on the volume's node) is refreshed here.
            if int(record.size_bytes or 0) != size:
                record.size_bytes = size
                state.save_record(config, record)
            for device in kernel.loops_of_file(path):
                _refresh_capacity(device, size)
        capacity = os.stat(path).st_size
    return csi_pb2.ControllerExpandVolumeResponse(capacity_bytes=capacity, node_expansion_required=not block)


def node_expand(config: Config, request: csi_pb2.NodeExpandVolumeRequest) -> csi_pb2.NodeExpandVolumeResponse:
    volume_id = names.volume_id_for(require(request.volume_id, "volume id"))
    path = require(request.volume_path, "volume path")
    block = _is_block(request) or records.is_block(records.known(config, volume_id))
    # A raw block volume is published on a file (its device node bound there), and staged on a
    # file named for it in the staging dir (node.block_file).
    block = block or (os.path.lexists(path) and not os.path.isdir(path))
    if block and os.path.isdir(path):
        path = os.path.join(path.rstrip("/") or "/", volume_id)
    target = (devicenode.check_target(path, config, what="volume path") if block
              else mounting.check_target(path, config, what="volume path"))
    with state.VolumeLock(config, volume_id, wait=LOCK_WAIT):
        record = records.known(config, volume_id)
        device = _device_at(config, volume_id, target, block)
        backing_file = config.backing_file(volume_id)
        size = target_size(request.capacity_range, os.stat(backing_file).st_size)
        # Normally ControllerExpandVolume grew the file already; a CO that skips it still gets
        # the whole growth, within the same budget.
        _grow_file(config, record, size)
        size = os.stat(backing_file).st_size
        _refresh_capacity(device, size)
        if block and int(record.size_bytes or 0) != size:
            record.size_bytes = size
            state.save_record(config, record)
        if not block and backing.growth_pending(record, size):
            growth.grow_filesystem(config, record, device, size)
    return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=size)


def _device_at(config: Config, volume_id: str, target: str, block: bool) -> str:
    """The loop device of the volume staged or published at `target`; NOT_FOUND when nothing of
    it is mounted there."""
    here = kernel.mounts_at(target)
    if not here:
        raise CsiError(Code.NOT_FOUND, f"volume {volume_id} is not staged or published at {target}; "
                       "NodeExpandVolume grows a volume in use at its staging or target path")
    if block:
        # A block volume is its device node bound onto a file: the device is the file's loop.
        devices = kernel.loops_of_file(config.backing_file(volume_id))
        bound = [device for device in devices if devicenode.bound_here(target, device, here)]
        if not bound:
            raise CsiError(Code.FAILED_PRECONDITION, f"{target} is not the device node of volume "
                           f"{volume_id}; refusing to grow it")
        return bound[0]
    if mounting.volume_of_mount(config, here[-1]) != volume_id:
        raise CsiError(Code.FAILED_PRECONDITION, f"{target} is mounted from {here[-1].source}, not "
                       f"from volume {volume_id}; refusing to grow it")
    return here[-1].source
