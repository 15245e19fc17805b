"""A volume's backing file and record: the sparse file made once, kept to its namespace, and
(thick volumes) every block of it reserved in the pool.

Callers hold the volume's lock (operations.py); each step is idempotent and pushes an undo
action for what it made (undo.py).
"""

from __future__ import annotations

import os

from flexvol.core import loop, state
from flexvol.core.config import Config
from flexvol.core.errors import CommandFailed, FlexvolError, Refused
from flexvol.core.faults import checkpoint

# Imported where used: every module costs each driver call its loading time (README,
# Performance).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flexvol.core.options import VolumeSpec
    from flexvol.core.undo import Undo


def ensure_file(config: Config, spec: VolumeSpec, undo: Undo, *,
                may_create: bool) -> tuple[dict, bool]:
    """Leave the volume's sparse backing file and its record in place; return the record and
    whether this call created the file (then all holes: ensure_filesystem's `created`).

    That fact belongs to this call only and is never saved in the record: a later call cannot
    know what happened to the file since.
    """
    volume_id = spec.volume_id
    path = config.backing_file(volume_id)
    record = state.load_record(config, volume_id)
    try:
        info: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        info = None
    if record is not None and record.restoring:
        raise Refused(f"volume {volume_id} is being made from {_origin(record.restoring)} and is not "
                      "ready yet", "retry; if no copy is running, 'flexvol repair --apply' removes "
                      "the unfinished volume")
    if info is not None:
        if record is not None and info.st_size < int(record.size_bytes or 0):
            # Someone truncated the file: the filesystem inside now runs past its end.
            raise Refused(
                f"the backing file of volume {volume_id} ({path}) is {info.st_size} bytes, smaller "
                f"than the {record.size_bytes} it was made or grown to: it was truncated",
                f"restore it from a backup, or extend it back (truncate -s {record.size_bytes} "
                f"{path}) and check its filesystem before use")
        if record is None:
            # The file outlived its record (a crash between the two writes, or a file put
            # there by hand): adopt it; ensure_filesystem decides from the file itself.
            record = state.new_record(volume_id, info.st_size, spec.fs_type)
            record.adopted = True
            state.save_record(config, record)
        return record, False
    if record is not None and record.formatted:
        orphans = loop.deleted_loops(config, record, volume_id)
        if orphans:
            raise Refused(
                f"the backing file of volume {volume_id} ({path}) was deleted while {orphans[0]} was "
                "attached to it; that loop device now holds the only copy of the data",
                f"copy it back once no pod writes to it (cp --sparse=always {orphans[0]} {path}), "
                "then retry")
        raise Refused(
            f"the backing file of volume {volume_id} ({path}) is missing, but its record says it "
            f"was formatted as {record.formatted.get('fs_type')}",
            "restore the file, or run 'flexvol delete' to forget the volume")
    if not may_create:
        raise Refused(f"volume {volume_id} does not exist yet and a read-only mount never creates "
                      "or formats one", "mount it read-write once first")
    check_pool_space(config, spec.size_bytes, volume_id)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            undo.push(f"remove new backing file {path}", lambda: state.remove(path), undo.path_gone(path))
            os.ftruncate(fd, spec.size_bytes)
        finally:
            os.close(fd)
    except OSError as error:
        raise FlexvolError(f"cannot create the backing file of volume {volume_id} ({path}): "
                           f"{error.strerror}", state.write_hint(error)) from None
    checkpoint("file-created")
    created_record = record is None
    record = record or state.new_record(volume_id, spec.size_bytes, spec.fs_type)
    # The CSI plugin saved all three with the CSI name, before the file: no second write.
    said = not created_record and (record.size_bytes, record.fs_type, record.allocation) == (
        spec.size_bytes, spec.fs_type, spec.allocation)
    record.size_bytes = spec.size_bytes
    record.fs_type = spec.fs_type
    # Decided once, here: ensure_reserved reads it on every mount and growth.
    record.allocation = spec.allocation
    # Not fsynced: until the formatted-once record is durable, a lost record only means the
    # file is adopted (or re-created) by the next call; nothing of value is in it yet.
    if not said:
        state.save_record(config, record, durable=False)
    if created_record:
        undo.push(f"remove new record of {volume_id}",
                  lambda: state.remove(config.record_path(volume_id)),
                  undo.path_gone(config.record_path(volume_id)))
    checkpoint("record-saved")
    return record, True


def _origin(restoring: dict) -> str:
    if restoring.get("from_snapshot"):
        return f"snapshot {restoring['from_snapshot']}"
    return f"volume {restoring.get('from_volume')}"


def check_namespace(config: Config, record: state.Record, spec: VolumeSpec) -> None:
    """Keep a volume to the namespace that first used it (README, Threat model).

    The first mount from a pod (or the provisioner, for the claim's namespace) records the
    owner; a pod of another namespace is refused unless an operator made the volume shareable
    (`flexvol share`). Calls that carry no pod namespace (mountdevice in attach mode, the
    toolkit) cannot be checked here.
    """
    namespace = spec.pod_namespace
    if not namespace:
        return
    owner = record.namespace
    if not owner:
        record.namespace = namespace
        loop.save_cache(config, record)
        return
    if owner != namespace and not record.shareable:
        raise Refused(f"volume {spec.volume_id} belongs to namespace {owner}; refusing to mount it "
                      f"for pod {namespace}/{spec.pod_name or '?'}",
                      f"use a volume of namespace {namespace}, or have an operator run "
                      f"'flexvol share {spec.volume_id}' to let every namespace mount it")


def remember_pv_name(config: Config, record: state.Record, pv_name: str) -> None:
    """Note which PV (or pod volume) names used this volume, for operators."""
    if pv_name and pv_name not in record.pv_names:
        record.pv_names.append(pv_name)
        loop.save_cache(config, record)


def add_pool_hint(config: Config, spec: VolumeSpec, error: CommandFailed) -> None:
    """Name the likely cause of a failed command when the pool cannot back the volume: a loop
    device over a sparse file on a full filesystem fails writes with bare I/O errors."""
    try:
        pool = os.statvfs(config.volumes_dir)
    except OSError:
        return
    free = pool.f_bavail * pool.f_frsize
    if not error.hint and free < spec.size_bytes:
        from flexvol.core.quantity import human_bytes

        error.hint = (f"the pool filesystem under {config.volumes_dir} has only {human_bytes(free)} "
                      f"free, too little to back volume {spec.volume_id}: free space there and retry")


def check_pool_space(config: Config, size: int, volume_id: str) -> None:
    """Refuse a size the pool cannot honour: more than its real free space minus what thin
    volumes were promised and have not written yet, or past the budget (budget.py)."""
    from flexvol.core import budget

    budget.check(config, size, volume_id)


def ensure_reserved(config: Config, record: state.Record, *, strict: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Leave every block of a thick volume allocated in the pool; notes for the journal.

    Runs after the volume is formatted: the driver formats only a file that holds no blocks.
    Thin volumes: nothing, not even a stat. A volume never fully reserved yet (new, or a call
    killed before it finished) is refused when the pool cannot hold it, and its new file is
    rolled back by the caller; one reserved before that lost blocks since (a `discard` mount
    gives freed blocks back) is mounted anyway, with a note, rather than kept from its pod.
    """
    from flexvol.core.options import THICK

    if record.allocation != THICK:
        return []
    volume_id = record.volume_id
    path = config.backing_file(volume_id)
    info = os.stat(path)
    missing = info.st_size - info.st_blocks * 512
    if missing <= 0:
        return []
    strict = strict or not record.reserved
    pool = os.statvfs(path)
    free = pool.f_bavail * pool.f_frsize
    try:
        if missing > free:
            raise _unreservable(volume_id, info.st_size, missing, free)
        reserve_blocks(path, info.st_size, progress)
    except Refused as error:
        if strict:
            raise
        return [f"thick volume {volume_id} is not fully reserved: {error}"]
    checkpoint("blocks-reserved")
    if not record.reserved:
        record.reserved = True
        state.save_record(config, record, durable=False)
    if strict:
        return []
    from flexvol.core.quantity import human_bytes

    return [f"reserved {human_bytes(missing)} of thick volume {volume_id} again"]


def _unreservable(volume_id: str, size: int, missing: int, free: int) -> Refused:
    from flexvol.core.quantity import human_bytes

    return Refused(f"thick volume {volume_id} of {human_bytes(size)} needs {human_bytes(missing)} more "
                   f"blocks reserved, but the pool has only {human_bytes(free)} of free space",
                   "free space on the pool filesystem, or make the volume thin")


RESERVE_CHUNK = 64 << 20


def reserve_blocks(path: str, size: int, progress: Callable[[int, int], None] | None = None) -> None:
    """fallocate the whole file in chunks; allocates only the holes, written blocks stay."""
    fd = os.open(path, os.O_WRONLY)
    try:
        done = 0
        while done < size:
            step = min(RESERVE_CHUNK, size - done)
            os.posix_fallocate(fd, done, step)
            done += step
            if progress:
                progress(done, size)
        # No fsync (a few ms per mount): a crash that loses the allocation leaves a file with
        # holes that the next mount reserves again, as it does for the record's "reserved".
    except OSError as error:
        from flexvol.core.quantity import human_bytes

        free = os.statvfs(path)
        raise Refused(f"reserving the blocks of {path} failed: {error.strerror} (the pool has "
                      f"{human_bytes(free.f_bavail * free.f_frsize)} of free space)",
                      "free space on the pool filesystem, or make the volume thin") from None
    finally:
        os.close(fd)



def growth_pending(record: state.Record | None, file_size: int | None) -> dict | None:
    """The record's `growing` flag, or one inferred for a formatted volume whose file is bigger
    than the size its record says (grown before the flag existed, or by hand)."""
    if not record:
        return None
    if record.growing:
        return record.growing
    recorded = int(record.size_bytes or 0)
    if record.formatted and file_size and recorded and file_size > recorded:
        return {"to": file_size, "since": "", "error": ""}
    return None
