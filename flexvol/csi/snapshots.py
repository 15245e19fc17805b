"""The CSI Controller's snapshot RPCs (CreateSnapshot, DeleteSnapshot, ListSnapshots) and
CreateVolume from a snapshot or a volume (volume_content_source), on the core's snapshots
(core/snapshots.py): the same copies, records and locks as `flexvol snapshot` and
`flexvol create --from-snapshot/--from-volume`.

A CSI snapshot name maps to a snapshot name as a volume name maps to a volume id
(names.volume_id_for); the snapshot's record keeps the CSI name, so a repeat is recognised
and another name that would map alike is refused.
"""

from __future__ import annotations

import os

from google.protobuf import timestamp_pb2

from flexvol.core import restore, snapshots, state
from flexvol.core.journal import CallInfo
from flexvol.core.options import SIZE_ALIGNMENT, VolumeSpec
from flexvol.core.records import Snapshot
from flexvol.csi import capability, names, records
from flexvol.csi.controller import (
    CO_PREFIX,
    RPC,
    TOKEN_PREFIX,
    Controller,
    choose_fs_type,
    page_start,
    parse_parameters,
)
from flexvol.csi.proto import csi_pb2
from flexvol.csi.status import Code, CsiError, invalid, require, rpc

# ListSnapshots page tokens: this prefix and the first snapshot id of the next page.
CAPABILITIES = (RPC.CREATE_DELETE_SNAPSHOT, RPC.LIST_SNAPSHOTS, RPC.CLONE_VOLUME)


def snapshot_message(record: Snapshot) -> csi_pb2.Snapshot:
    created = timestamp_pb2.Timestamp()
    try:
        created.FromJsonString(record.created_at)
    except ValueError:
        pass
    return csi_pb2.Snapshot(size_bytes=record.size_bytes, snapshot_id=record.name,
                            source_volume_id=record.source_volume, creation_time=created,
                            ready_to_use=record.ready)


def csi_snapshots(config: object) -> list[Snapshot]:
    """Ready snapshots made through CSI, by snapshot id."""
    found = [record for record in snapshots.list_snapshots(config)  # type: ignore[arg-type]
             if record.csi_name]
    return sorted(found, key=lambda record: record.name)


class SnapshotController(Controller):
    """The Controller with snapshots and clones: server.py serves this one."""

    @rpc
    def CreateSnapshot(self, request: csi_pb2.CreateSnapshotRequest,
                       context: object) -> csi_pb2.CreateSnapshotResponse:
        source = require(request.source_volume_id, "source volume id")
        name = require(request.name, "snapshot name")
        unknown = sorted(key for key in request.parameters if not key.startswith(CO_PREFIX))
        if unknown:
            raise invalid(f"unknown parameter(s) {', '.join(repr(key[:60]) for key in unknown)}: "
                          "flexvol snapshots take none")
        records.known(self.config, source)
        snapshot_id = names.volume_id_for(name)
        existing = snapshots.load_snapshot(self.config, snapshot_id)
        if existing is not None and existing.ready:
            if existing.csi_name != name or existing.source_volume != source:
                raise CsiError(Code.ALREADY_EXISTS,
                               f"snapshot {name!r} exists, of volume {existing.source_volume}"
                               if existing.csi_name == name else
                               f"snapshot id {snapshot_id} is taken by a snapshot not made for CSI "
                               f"name {name!r}")
            return csi_pb2.CreateSnapshotResponse(snapshot=snapshot_message(existing))
        record = snapshots.snapshot(self.config, source, snapshot_id, CallInfo("csi:CreateSnapshot"),
                                    fields={names.RECORD_NAME: name})
        return csi_pb2.CreateSnapshotResponse(snapshot=snapshot_message(record))

    @rpc
    def DeleteSnapshot(self, request: csi_pb2.DeleteSnapshotRequest,
                       context: object) -> csi_pb2.DeleteSnapshotResponse:
        snapshot_id = require(request.snapshot_id, "snapshot id")
        # An id flexvol never gave out names no snapshot: nothing to delete (idempotent).
        if not names.is_volume_id(snapshot_id):
            return csi_pb2.DeleteSnapshotResponse()
        record = snapshots.load_snapshot(self.config, snapshot_id)
        if record is None and not os.path.exists(snapshots.snapshot_file(self.config, snapshot_id)):
            return csi_pb2.DeleteSnapshotResponse()
        if record is not None and record.ready and not record.csi_name:
            raise CsiError(Code.FAILED_PRECONDITION,
                           f"snapshot {snapshot_id} was not made through CSI ('flexvol snapshot create' "
                           "made it); delete it with 'flexvol snapshot delete'")
        snapshots.delete_snapshot(self.config, snapshot_id, CallInfo("csi:DeleteSnapshot"))
        return csi_pb2.DeleteSnapshotResponse()

    @rpc
    def ListSnapshots(self, request: csi_pb2.ListSnapshotsRequest,
                      context: object) -> csi_pb2.ListSnapshotsResponse:
        """The ready snapshots made through CSI, by id; a token names the first id of the next
        page, so a snapshot deleted between pages never shifts the ones after it."""
        start = page_start(request.max_entries, request.starting_token)
        wanted_id, wanted_source = request.snapshot_id, request.source_volume_id
        found = [record for record in csi_snapshots(self.config) if record.name >= start
                 and (not wanted_id or record.name == wanted_id)
                 and (not wanted_source or record.source_volume == wanted_source)]
        limit = request.max_entries or len(found)
        page, rest = found[:limit], found[limit:]
        return csi_pb2.ListSnapshotsResponse(
            entries=[csi_pb2.ListSnapshotsResponse.Entry(snapshot=snapshot_message(record))
                     for record in page],
            next_token=TOKEN_PREFIX + rest[0].name if rest else "")

    @rpc
    def CreateVolume(self, request: csi_pb2.CreateVolumeRequest,
                     context: object) -> csi_pb2.CreateVolumeResponse:
        if not request.HasField("volume_content_source"):
            return Controller.CreateVolume.__wrapped__(self, request, context)  # type: ignore[attr-defined]
        name = require(request.name, "volume name")
        capabilities = list(request.volume_capabilities)
        capability.check_all(capabilities)
        fs_parameter, allocation = parse_parameters(dict(request.parameters))
        content = request.volume_content_source
        source_size, source_fs, origin = self._source(content)
        block = capability.access_type(capabilities)
        # A copy keeps its source's kind: raw block bytes are never formatted, nor a
        # filesystem handed out raw.
        if block != (not source_fs):
            raise invalid("the source is a raw block volume: its copy is one too (access type block)"
                          if block is False else "the source holds a filesystem: its copy is one too "
                          "(access type mount)")
        if not block and choose_fs_type(fs_parameter, capabilities) != source_fs and (
                fs_parameter or any(item.mount.fs_type for item in capabilities)):
            raise invalid(f"the source holds {source_fs}: a restored or cloned volume keeps it")
        capacity = request.capacity_range
        if capacity.limit_bytes and capacity.limit_bytes < source_size:
            raise CsiError(Code.OUT_OF_RANGE, f"the source is {source_size} bytes, more than "
                           f"limit_bytes {capacity.limit_bytes}")
        size = max(source_size, -(-capacity.required_bytes // SIZE_ALIGNMENT) * SIZE_ALIGNMENT)
        self._check_topology(request.accessibility_requirements)
        volume_id = names.volume_id_for(name)
        record = self._existing(volume_id, name, origin)
        if record is None:
            spec = VolumeSpec(volume_id, size_bytes=size, size_given=True, fs_type=source_fs or "",
                              allocation=allocation)
            record = restore.create_from(self.config, spec, CallInfo("csi:CreateVolume"), **origin,
                                           created_by=names.CREATED_BY, fields={names.RECORD_NAME: name})
        volume = self._volume(record)
        volume.content_source.CopyFrom(content)
        return csi_pb2.CreateVolumeResponse(volume=volume)

    def _source(self, content: csi_pb2.VolumeContentSource) -> tuple[int, str, dict[str, str]]:
        """(size, filesystem ("" for a raw block source), create_from's source argument) of the
        content source, or NOT_FOUND."""
        if content.HasField("snapshot"):
            snapshot_id = require(content.snapshot.snapshot_id, "source snapshot id")
            record = snapshots.load_snapshot(self.config, snapshot_id) \
                if names.is_volume_id(snapshot_id) else None
            if record is None or not record.ready:
                raise CsiError(Code.NOT_FOUND, f"snapshot {snapshot_id[:80]!r} does not exist")
            fs_type = "" if record.block else str(record.fs_type)
            return record.size_bytes, fs_type, {"from_snapshot": snapshot_id}
        if content.HasField("volume"):
            volume_id = require(content.volume.volume_id, "source volume id")
            record = records.known(self.config, volume_id)
            size = os.stat(self.config.backing_file(volume_id)).st_size \
                if os.path.exists(self.config.backing_file(volume_id)) else int(record.size_bytes or 0)
            fs_type = "" if records.is_block(record) else records.fs_type(record)
            return size, fs_type, {"from_volume": volume_id}
        raise invalid("volume_content_source names neither a snapshot nor a volume")

    def _existing(self, volume_id: str, name: str, origin: dict[str, str]) -> state.Record | None:
        """The volume a repeat of this request made already, None when there is none yet (or
        only a killed attempt, which create_from finishes); ALREADY_EXISTS for another."""
        from flexvol.core import state

        record = state.load_record(self.config, volume_id)
        if record is None:
            return None
        if getattr(record, names.RECORD_NAME) != name:
            raise CsiError(Code.ALREADY_EXISTS, f"volume id {volume_id} is taken by a volume not made "
                           f"for CSI name {name!r}")
        if record.restoring:
            return None
        made = record.restored_from or {}
        if {key: made.get(key) for key in origin} != origin:
            raise CsiError(Code.ALREADY_EXISTS, f"volume {name!r} exists and was not made from this source")
        return record

    @rpc
    def ControllerGetCapabilities(self, request: csi_pb2.ControllerGetCapabilitiesRequest,
                                  context: object) -> csi_pb2.ControllerGetCapabilitiesResponse:
        reply = Controller.ControllerGetCapabilities.__wrapped__(self, request, context)  # type: ignore[attr-defined]
        reply.capabilities.extend(csi_pb2.ControllerServiceCapability(rpc=RPC(type=kind))
                                  for kind in CAPABILITIES)
        return reply
