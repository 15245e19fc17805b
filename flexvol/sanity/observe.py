"""What the checks observe on the node: payload bytes, mounts at a path, files under a root."""

from __future__ import annotations

import os
from collections.abc import Callable

from flexvol.sanity.caller import Call
from flexvol.sanity.context import Context
from flexvol.sanity.kubelet import CheckFailed, Volume
from flexvol.sanity.node import is_mount_point, mounts_at

PAYLOAD_NAME = "sanity-payload.bin"


def write_payload(directory: str) -> bytes:
    data = os.urandom(64 * 1024)
    with open(os.path.join(directory, PAYLOAD_NAME), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return data


def read_payload(directory: str) -> bytes | None:
    try:
        with open(os.path.join(directory, PAYLOAD_NAME), "rb") as handle:
            return handle.read()
    except OSError:
        return None


def one_mount(path: str, call: Call | None, what: str) -> None:
    count = len(mounts_at(path))
    if count == 0:
        raise CheckFailed(f"{what}: {path} is not a mount point", call)
    if count > 1:
        raise CheckFailed(f"{what}: {count} mounts are stacked at {path}; a repeat must add none", call)


def dir_left_clean(path: str, call: Call | None, what: str) -> None:
    if is_mount_point(path):
        raise CheckFailed(f"{what}: {path} is still a mount point", call)
    if os.path.isdir(path) and os.listdir(path):
        raise CheckFailed(f"{what}: {path} is not empty: {', '.join(sorted(os.listdir(path))[:5])}", call)


def files_under(root: str) -> set[str]:
    found = set()
    for directory, _dirs, files in os.walk(root):
        found.update(os.path.join(directory, name) for name in files)
    return found


def run_with_teardown(ctx: Context, volumes: list[Volume], body: Callable[[], None]) -> None:
    kubelet = ctx.kubelet()
    try:
        body()
    finally:
        for volume in volumes:
            kubelet.teardown_quietly(volume)
