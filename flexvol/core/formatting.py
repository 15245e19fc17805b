"""The filesystem on a volume's device: made once, on a device proven blank, never again.

The table of supported filesystems is filesystems.py. Callers hold the volume's lock.
"""

from __future__ import annotations

import os

from flexvol.core import backing, kernel, state
from flexvol.core.config import Config
from flexvol.core.errors import CommandFailed, ProbeFailed, Refused
from flexvol.core.faults import checkpoint
from flexvol.core.runner import run

# Imported where used: every module costs each driver call its loading time (README,
# Performance).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from flexvol.core.options import VolumeSpec

MKFS_TIMEOUT = 600


def ensure_filesystem(config: Config, record: state.Record, device: str, spec: VolumeSpec, *,
                      created: bool = False) -> bool:
    """Leave the volume formatted as spec.fs_type; format only a device proven blank.

    `created`: this very call created the backing file (ensure_file says so). Returns True
    when mkfs ran. Never formats a volume that was formatted before, that
    probes as anything, or whose file was written to (docs/design.md section 5).
    """
    volume_id = record.volume_id
    formatted = record.formatted
    if formatted:
        if formatted.get("fs_type") != spec.fs_type:
            raise _wrong_type(volume_id, formatted.get("fs_type", "?"), spec.fs_type)
        return False
    interrupted = record.mkfs_started
    # A file this very call created (O_EXCL, then ftruncate: only holes) needs no probe.
    fresh = created and os.stat(config.backing_file(volume_id)).st_blocks == 0
    found = kernel.Probe(blank=True) if fresh else kernel.probe(device)
    if not found.blank:
        if found.fs_type == spec.fs_type and not interrupted:
            # Formatted before the record could say so (or by hand): remember, do not redo.
            _remember_formatted(config, record, found)
            return False
        if not (interrupted and interrupted.get("fs_type") == spec.fs_type):
            raise _wrong_type(volume_id, found.fs_type, spec.fs_type)
    if spec.read_only:
        raise Refused(f"volume {volume_id} has no filesystem yet and a read-only mount never formats",
                      "mount it read-write once first")
    path = config.backing_file(volume_id)
    if not interrupted and os.stat(path).st_blocks != 0:
        raise ProbeFailed(
            f"volume {volume_id} shows no filesystem signature but its backing file {path} holds "
            "written blocks; refusing to format it",
            "inspect the file by hand (blkid -p, file -s); flexvol formats only never-written files")
    record.mkfs_started = {"fs_type": spec.fs_type, "at": state.now()}
    # Not fsynced either: if it is lost, nothing was mounted yet, so a retry that formats the
    # file again loses nothing. The formatted record below is the one that must survive.
    state.save_record(config, record, durable=False)
    checkpoint("mkfs-intent-saved")
    from flexvol.core.filesystems import FILESYSTEMS
    from flexvol.core.superblock import read_identity

    filesystem = FILESYSTEMS[spec.fs_type]
    # --force only to finish our own mkfs that a killed call left half-done.
    try:
        run(filesystem.mkfs_argv(device, force=bool(interrupted)), timeout=MKFS_TIMEOUT,
            what=f"mkfs.{spec.fs_type}")
    except CommandFailed as error:
        backing.add_pool_hint(config, spec, error)
        raise
    checkpoint("mkfs-done")
    identity = read_identity(device)
    if identity:
        made = kernel.Probe(blank=False, fs_type=identity[0], uuid=identity[1])
    else:
        made = kernel.probe(device)
    if made.fs_type != spec.fs_type:
        raise CommandFailed(f"mkfs.{spec.fs_type} on {device} left {made.fs_type or 'no filesystem'}")
    _remember_formatted(config, record, made)
    checkpoint("formatted-saved")
    return True


def _remember_formatted(config: Config, record: state.Record, found: kernel.Probe) -> None:
    record.formatted = {"fs_type": found.fs_type, "uuid": found.uuid, "at": state.now()}
    record.mkfs_started = None
    state.save_record(config, record)


def _wrong_type(volume_id: str, found: str, wanted: str) -> Refused:
    article = "an" if found[:1] in ("a", "e", "i", "o", "u", "x") else "a"
    return Refused(f"volume {volume_id} already holds {article} {found} filesystem; refusing to format it "
                   f"as {wanted}", f"set fsType to {found} or use another volumeID")
