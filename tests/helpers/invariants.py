"""What must hold after every scenario, whatever happened in it (checked against the kernel):

- no backing file has two loop devices;
- nothing is mounted under the data root;
- no dir carries the write guard (immutable attribute) without a mount over it;
- the journal's last word on each volume matches the kernel: a volume whose last call was a
  successful unmount that "detached" its device has no loop device left.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from flexvol.core import kernel
from flexvol.core.guard import is_guarded


def violations(base: Path, root: Path) -> list[str]:
    found: list[str] = []
    marker = str(base)
    ours = {device: backing for device, backing in kernel.loop_devices().items() if marker in backing}
    for backing, count in Counter(ours.values()).items():
        if count > 1:
            devices = sorted(d for d, b in ours.items() if b == backing)
            found.append(f"{backing} has {count} loop devices: {', '.join(devices)}")
    mounts = kernel.read_mounts()
    for mount in mounts:
        # (The data root itself may be a test's own small filesystem.)
        if mount.mount_point.startswith(str(root) + "/"):
            found.append(f"{mount.source} is mounted under the data root at {mount.mount_point}")
    mount_points = {mount.mount_point for mount in mounts}
    found.extend(f"{path} keeps its write guard with nothing mounted on it"
                 for path in _guarded_dirs(base, mount_points))
    found.extend(_journal_mismatches(root, ours))
    return found


def _guarded_dirs(base: Path, mount_points: set[str]) -> list[str]:
    guarded = []
    for directory, subdirs, _files in os.walk(base):
        # Never descend into a mount: what is beneath a mount is not visible, and the guard
        # beneath a live mount is the point of it.
        subdirs[:] = [name for name in subdirs if os.path.join(directory, name) not in mount_points]
        for name in subdirs:
            path = os.path.join(directory, name)
            if is_guarded(path):
                guarded.append(path)
    return guarded


def _journal_mismatches(root: Path, ours: dict[str, str]) -> list[str]:
    journal = root / "log" / "calls.jsonl"
    try:
        lines = journal.read_text().splitlines()
    except OSError:
        return []
    last: dict[str, dict] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("volume"):
            last[entry["volume"]] = entry
    found = []
    for volume_id, entry in last.items():
        detached = [note.split(" ", 1)[1] for note in entry.get("notes", []) if note.startswith("detached ")]
        if entry.get("status") != "Success" or not detached:
            continue
        backing = str(root / "volumes" / f"{volume_id}.img")
        for device in detached:
            if ours.get(device) in (backing, backing + kernel.DELETED_SUFFIX):
                found.append(f"the journal says {entry['verb']} of {volume_id} detached {device}, "
                             "but the kernel still has it on the volume's file")
    return found
