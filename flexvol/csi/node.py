"""The CSI Node service: stage (the core's stage operation: loop device, then a filesystem
formatted once and mounted at the staging path, or a raw block volume's device node bound onto a
file in it), publish (bind the staged filesystem, or the device node, into a pod's target path),
and their inverses.

Staging is core/staging.py's operation, the FlexVolume mount's steps under the same lock; the
rest uses the same steps and mount-target entries (state.save_target), so the toolkit, repair
and the FlexVolume driver see a CSI-staged volume as one of theirs.
"""

from __future__ import annotations

import os
import stat

from flexvol.core import devicenode, growth, guard, kernel, loop, mountcall, mountdir, mounting, state
from flexvol.core.config import Config
from flexvol.core.errors import Refused
from flexvol.core.faults import checkpoint
from flexvol.core.filesystems import BASE_MOUNT_OPTIONS
from flexvol.core.journal import CallInfo
from flexvol.core.operations import in_use
from flexvol.core.options import DEFAULT_ALLOCATION, VolumeSpec
from flexvol.core.runner import run
from flexvol.core.staging import stage
from flexvol.core.undo import Undo
from flexvol.csi import access, capability, ephemeral, expand, names, records, stats, store
from flexvol.csi.proto import csi_pb2, csi_pb2_grpc
from flexvol.csi.status import Code, CsiError, invalid, require, rpc

LOCK_WAIT = 2.0
RPC = csi_pb2.NodeServiceCapability.RPC


class Node(csi_pb2_grpc.NodeServicer):
    def __init__(self, config: Config, node_id: str) -> None:
        self.config = config
        self.node_id = node_id

    # ---- stage ---------------------------------------------------------------------------

    @rpc
    def NodeStageVolume(self, request: csi_pb2.NodeStageVolumeRequest,
                        context: object) -> csi_pb2.NodeStageVolumeResponse:
        volume_id = names.volume_id_for(require(request.volume_id, "volume id"))
        path = require(request.staging_target_path, "staging target path")
        if not request.HasField("volume_capability"):
            raise invalid("volume capability is missing")
        wanted = request.volume_capability
        capability.check(wanted)
        block = capability.is_block(wanted)
        group = access.mount_group(wanted)
        config = self.config
        record = records.known(config, volume_id)
        records.check_access(record, volume_id, block, wanted.mount.fs_type)
        spec = VolumeSpec(volume_id, size_bytes=int(record.size_bytes or 0),
                          fs_type="" if block else records.fs_type(record),
                          read_only=capability.read_only(wanted),
                          mount_options=capability.mount_flags(wanted),
                          allocation=record.allocation or DEFAULT_ALLOCATION, fs_group=group)
        target = block_file(path, volume_id) if block else path
        stage(config, target, spec, CallInfo("csi:NodeStageVolume"), block=block, lock_wait=LOCK_WAIT)
        return csi_pb2.NodeStageVolumeResponse()

    def _already_mounted(self, target: str, volume_id: str, read_only: bool) -> bool:
        """True if the volume is mounted at target as asked; an error if something else is."""
        here = kernel.mounts_at(target)
        if not here:
            return False
        owner = mounting.volume_of_mount(self.config, here[-1])
        if owner != volume_id:
            raise CsiError(Code.FAILED_PRECONDITION, f"{target} is already a mount point of "
                           f"{kernel.device_of_mount(here[-1])}; refusing to mount volume {volume_id} "
                           "over it")
        if here[-1].read_only != read_only:
            have = "read-only" if here[-1].read_only else "read-write"
            raise CsiError(Code.ALREADY_EXISTS, f"volume {volume_id} is already mounted {have} at "
                           f"{target}; unmount it before asking for {'ro' if read_only else 'rw'}")
        return True

    @rpc
    def NodeUnstageVolume(self, request: csi_pb2.NodeUnstageVolumeRequest,
                          context: object) -> csi_pb2.NodeUnstageVolumeResponse:
        volume_id = names.volume_id_for(require(request.volume_id, "volume id"))
        path = require(request.staging_target_path, "staging target path")
        # A raw block volume is staged on a file in the staging dir, a filesystem on the dir.
        inner = block_file(path, volume_id)
        if os.path.lexists(inner) or state.load_target(self.config, inner) is not None:
            self._release(volume_id, inner, "staging path", block=True)
        self._release(volume_id, path, "staging path")
        return csi_pb2.NodeUnstageVolumeResponse()

    def _release(self, volume_id: str, path: str, what: str, *, gone_ok: bool = False,
                 block: bool = False) -> None:
        """Unmount the volume at `path` (`block`: unbind its device node from the file and remove
        the file), lift the write guard, detach a loop device nothing uses any more, forget the
        path, and delete an inline volume. Idempotent; for a volume never heard of (or deleted
        already, `gone_ok`) with nothing at `path`: NOT_FOUND, or nothing to do. A device still
        held open (a pod's process): FAILED_PRECONDITION naming the holder, kept attached."""
        config = self.config
        target = (devicenode.check_target(path, config, what=what) if block
                  else mounting.check_target(path, config, what=what))
        if not names.is_volume_id(volume_id) or not records.exists(config, volume_id):
            if kernel.mounts_at(target) or state.load_target(config, target):
                raise CsiError(Code.FAILED_PRECONDITION, f"{target} does not hold volume {volume_id}")
            if gone_ok:
                return
            raise CsiError(Code.NOT_FOUND, f"volume {volume_id[:80]!r} does not exist in this node's pool")
        with state.VolumeLock(config, volume_id, wait=LOCK_WAIT):
            here = kernel.mounts_at(target)
            sources: tuple[str, ...] = ()
            if here:
                if mounting.volume_of_mount(config, here[-1]) != volume_id:
                    raise CsiError(Code.FAILED_PRECONDITION, f"{target} is mounted from "
                                   f"{kernel.device_of_mount(here[-1])}, not from volume {volume_id}; "
                                   "refusing to unmount it")
                sources = tuple(kernel.device_of_mount(mount) for mount in here)
                if not block:
                    mounting.unmount_target(target)
            if block:
                devicenode.release(target)
            elif guard.lift_write_guard(target):
                checkpoint("guard-lifted")
            held: dict[str, str] = {}
            loop.release_loop(config, volume_id, also=sources, held=held)
            for device, holders in held.items():
                raise CsiError(Code.FAILED_PRECONDITION, f"{device} of volume {volume_id} is held open "
                               f"by {holders}; it stays attached until that closes it (retry then)")
            state.remove_target(config, target)
            checkpoint("target-removed")
            record = state.load_record(config, volume_id)
            if record is not None and record.ephemeral and not in_use(config, volume_id):
                # An inline volume lives as long as its pod's mount.
                store.remove(config, volume_id)

    # ---- publish -------------------------------------------------------------------------

    @rpc
    def NodePublishVolume(self, request: csi_pb2.NodePublishVolumeRequest,
                          context: object) -> csi_pb2.NodePublishVolumeResponse:
        volume_id = names.volume_id_for(require(request.volume_id, "volume id"))
        path = require(request.target_path, "target path")
        if not request.HasField("volume_capability"):
            raise invalid("volume capability is missing")
        capability.check(request.volume_capability)
        access.mount_group(request.volume_capability)
        block = capability.is_block(request.volume_capability)
        if request.volume_context.get(ephemeral.MARKER) == "true":
            if block:
                raise invalid("an inline ephemeral volume is a filesystem made for its pod: the block "
                              "access type is not served for it; use a PersistentVolumeClaim with "
                              "volumeMode: Block")
            self._publish_ephemeral(request, volume_id, path)
            return csi_pb2.NodePublishVolumeResponse()
        if not request.staging_target_path:
            raise CsiError(Code.FAILED_PRECONDITION, "staging target path is missing: flexvol "
                           "stages every volume (NodeStageVolume) before publishing it")
        config = self.config
        records.check_access(records.known(config, volume_id), volume_id, block)
        staged_at = mounting.check_target(request.staging_target_path, config, what="staging path")
        target = (devicenode.check_target(path, config, what="target path") if block
                  else mounting.check_target(path, config, what="target path"))
        if target == staged_at:
            raise invalid("the target path is the staging path")
        read_only = request.readonly or capability.read_only(request.volume_capability)
        if block:
            self._publish_block(volume_id, block_file(staged_at, volume_id), target, read_only)
            return csi_pb2.NodePublishVolumeResponse()
        staging = staged_at
        state.ensure_dirs(config)
        with state.VolumeLock(config, volume_id, wait=LOCK_WAIT):
            staged = kernel.mounts_at(staging)
            if not staged or mounting.volume_of_mount(config, staged[-1]) != volume_id:
                raise CsiError(Code.FAILED_PRECONDITION,
                               f"volume {volume_id} is not staged at {staging}; stage it first")
            access.check_namespace(config, volume_id, dict(request.volume_context))
            if self._already_mounted(target, volume_id, read_only):
                access.apply_mount_group(target, volume_id, request.volume_capability, read_only)
                return csi_pb2.NodePublishVolumeResponse()
            undo = Undo()
            try:
                mounting.remember_target(config, target, volume_id, undo, what="target path")
                bind(config, staging, target, staged[-1].source, volume_id, read_only, undo)
                if access.apply_mount_group(target, volume_id, request.volume_capability, read_only):
                    checkpoint("fsgroup-applied")
            except BaseException:
                undo.rollback()
                raise
            undo.commit()
        return csi_pb2.NodePublishVolumeResponse()

    def _publish_block(self, volume_id: str, staged_file: str, target: str, read_only: bool) -> None:
        """Bind the staged volume's device node onto the file `target` (made here; the CO makes
        its dir). A read-only bind does not stop writes through a device node: the CO gives a
        read-only publish to the pod read-only (the kubelet asks the runtime for a device the
        container may only read), and a volume staged read-only has its device read-only."""
        config = self.config
        state.ensure_dirs(config)
        with state.VolumeLock(config, volume_id, wait=LOCK_WAIT):
            staged = kernel.mounts_at(staged_file)
            if not staged or mounting.volume_of_mount(config, staged[-1]) != volume_id:
                raise CsiError(Code.FAILED_PRECONDITION,
                               f"volume {volume_id} is not staged at {os.path.dirname(staged_file)}; "
                               "stage it first")
            device = kernel.device_of_mount(staged[-1])
            if staged[-1].read_only and not read_only:
                raise CsiError(Code.FAILED_PRECONDITION, f"volume {volume_id} is staged read-only; "
                               "a read-write publish needs a read-write stage")
            if self._already_mounted(target, volume_id, read_only):
                return
            undo = Undo()
            try:
                mounting.remember_target(config, target, volume_id, undo, what="target path")
                devicenode.ensure_bound(device, target, read_only, undo, config=config)
            except BaseException:
                undo.rollback()
                raise
            undo.commit()

    def _publish_ephemeral(self, request: csi_pb2.NodePublishVolumeRequest, volume_id: str,
                           path: str) -> None:
        """An inline volume of a pod: made, formatted and mounted at the target path in one call
        (the kubelet does not stage it); NodeUnpublishVolume deletes it."""
        config = self.config
        size, fs_type, allocation = ephemeral.attributes(dict(request.volume_context),
                                                         request.volume_capability.mount.fs_type)
        target = mounting.check_target(path, config, what="target path")
        spec = VolumeSpec(volume_id, size_bytes=size, size_given=True, fs_type=fs_type,
                          read_only=request.readonly, allocation=allocation,
                          mount_options=capability.mount_flags(request.volume_capability))
        state.ensure_dirs(config)
        with state.VolumeLock(config, volume_id, wait=LOCK_WAIT):
            record = state.load_record(config, volume_id)
            if record is not None and (record.csi_name != request.volume_id
                                       or not record.ephemeral):
                raise CsiError(Code.ALREADY_EXISTS, f"volume id {volume_id} is taken by a volume "
                               f"that is not the inline volume {request.volume_id!r}")
            if self._already_mounted(target, volume_id, spec.read_only):
                access.apply_mount_group(target, volume_id, request.volume_capability, spec.read_only)
                return
            undo = Undo()
            try:
                mounting.remember_target(config, target, volume_id, undo, what="target path", mode=spec.mode,
                                         fs_type=fs_type, mount_options=spec.mount_options)
                record, device = store.make(config, spec, request.volume_id, undo, ephemeral=True)
                growth.finish_growth(config, record, device)
                access.check_namespace(config, volume_id, dict(request.volume_context))
                mounting.ensure_mounted(device, target, spec, undo, config=config)
                if access.apply_mount_group(target, volume_id, request.volume_capability, spec.read_only):
                    checkpoint("fsgroup-applied")
            except BaseException:
                undo.rollback()
                raise
            undo.commit()

    @rpc
    def NodeUnpublishVolume(self, request: csi_pb2.NodeUnpublishVolumeRequest,
                            context: object) -> csi_pb2.NodeUnpublishVolumeResponse:
        volume_id = names.volume_id_for(require(request.volume_id, "volume id"))
        path = require(request.target_path, "target path")
        # A raw block volume is published on a file (its device node once bound), a filesystem on a dir.
        try:
            block = not stat.S_ISDIR(os.lstat(path).st_mode)
        except OSError:
            block = False
        # An inline volume is deleted with its last unpublish: a retry of that unpublish (its
        # reply lost) finds no volume, and must succeed for the pod to go.
        self._release(volume_id, path, "target path", gone_ok=True, block=block)
        # The plugin made the target dir (bind), so it removes it (CSI spec, NodeUnpublishVolume);
        # rmdir takes only an empty dir, never a pod's data (a block volume's file went above).
        try:
            os.rmdir(path)
        except OSError:
            pass
        return csi_pb2.NodeUnpublishVolumeResponse()

    # ---- stats ---------------------------------------------------------------------------

    @rpc
    def NodeGetVolumeStats(self, request: csi_pb2.NodeGetVolumeStatsRequest,
                           context: object) -> csi_pb2.NodeGetVolumeStatsResponse:
        volume_id = names.volume_id_for(require(request.volume_id, "volume id"))
        path = require(request.volume_path, "volume path")
        config = self.config
        record = records.known(config, volume_id)
        here = kernel.mounts_at(path)
        if not here or mounting.volume_of_mount(config, here[-1]) != volume_id:
            raise CsiError(Code.NOT_FOUND, f"volume {volume_id} is not mounted at {path}")
        device = kernel.device_of_mount(here[-1])
        usage = stats.block_usage(device) if records.is_block(record) else stats.usage(path)
        return csi_pb2.NodeGetVolumeStatsResponse(
            usage=usage, volume_condition=stats.condition(config, record, device))

    # ---- about the node ------------------------------------------------------------------

    @rpc
    def NodeGetCapabilities(self, request: csi_pb2.NodeGetCapabilitiesRequest,
                            context: object) -> csi_pb2.NodeGetCapabilitiesResponse:
        return csi_pb2.NodeGetCapabilitiesResponse(capabilities=[
            csi_pb2.NodeServiceCapability(rpc=RPC(type=kind))
            for kind in (RPC.STAGE_UNSTAGE_VOLUME, RPC.GET_VOLUME_STATS, RPC.VOLUME_CONDITION,
                         RPC.EXPAND_VOLUME, RPC.VOLUME_MOUNT_GROUP)])

    @rpc
    def NodeExpandVolume(self, request: csi_pb2.NodeExpandVolumeRequest,
                         context: object) -> csi_pb2.NodeExpandVolumeResponse:
        return expand.node_expand(self.config, request)

    @rpc
    def NodeGetInfo(self, request: csi_pb2.NodeGetInfoRequest,
                    context: object) -> csi_pb2.NodeGetInfoResponse:
        return csi_pb2.NodeGetInfoResponse(
            node_id=self.node_id,
            accessible_topology=csi_pb2.Topology(segments={names.TOPOLOGY_KEY: self.node_id}))


def bind(config: Config, staging: str, target: str, device: str, volume_id: str, read_only: bool,
         undo: Undo) -> None:
    """Bind-mount the filesystem staged at `staging` onto `target` (made if missing), read-only
    when asked; both dirs are reached without following symlinks (mountdir.open_dir)."""
    source = mountdir.open_dir(staging, leaf=False)
    if source is None:
        raise Refused(f"staging path {staging} is gone")
    opened = mountdir.open_dir(target, create=True, undo=undo, forbidden=mountdir.data_root_ids(config))
    if opened is None:
        raise Refused(f"{target} does not exist")
    with source:
        if opened.covered():
            raise CsiError(Code.FAILED_PRECONDITION, f"{target} is already a mount point")
        if guard.set_immutable(opened.fd, target, True):
            undo.push(f"lift write guard of {target}",
                      lambda: guard.set_immutable(opened.fd, target, False),
                      lambda: "still immutable" if guard.is_immutable_fd(opened.fd) else "")
            checkpoint("guard-set")
        # Pushed first: a mount command that fails after binding (a failed remount) leaves
        # the bind in place, and the rollback must remove it.
        undo.push(f"unmount {target}", lambda: mounting.release_mount_dir(opened),
                  lambda: "still mounted" if opened.covered() else "")
        mountcall.mount(source.child_proc_path, opened.proc_path, None, mountcall.MS_BIND,
                        ["mount", "-c", "--bind", source.child_proc_path, opened.proc_path],
                        timeout=mounting.MOUNT_TIMEOUT, pass_fds=(source.parent_fd, opened.fd))
    if read_only:
        # Read-only is a flag of the bind itself, set by a remount of what the dir's name shows
        # now (the bind, not the dir beneath it); the remount replaces every per-mount flag, so
        # nosuid and nodev are given again.
        flags = ",".join(("remount", "bind", "ro", *BASE_MOUNT_OPTIONS))
        run(["mount", "-c", "-o", flags, opened.child_proc_path],
            timeout=mounting.MOUNT_TIMEOUT, what="mount", pass_fds=(opened.parent_fd,))
    checkpoint("bound")
    now = kernel.mounts_at(target)
    if not now or now[-1].source != device or now[-1].read_only != read_only:
        raise Refused(f"bind mount of volume {volume_id} at {target} did not take effect as "
                      f"{'ro' if read_only else 'rw'}")


def block_file(staging: str, volume_id: str) -> str:
    """Where a raw block volume is staged: a file named for it in the CO's staging dir."""
    return os.path.join(staging.rstrip("/") or "/", volume_id)
