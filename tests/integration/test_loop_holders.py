"""A loop device is never detached while anything still uses it: a bind mount of its device node
(a published raw block volume) or a process holding it open (a pod writing to it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from flexvol.core import kernel, loop, state
from flexvol.core.config import Config
from flexvol.core.undo import Undo
from tests.helpers.driver import Driver

MiB = 1 << 20


def attached_volume(driver: Driver, volume_id: str = "held") -> tuple[Config, str]:
    """A 64 MiB volume of the driver fixture's data root, attached to its loop device."""
    config = Config(str(driver.root))
    state.ensure_dirs(config)
    path = config.backing_file(volume_id)
    with open(path, "wb") as handle:
        handle.truncate(64 * MiB)
    record = state.new_record(volume_id, 64 * MiB, "ext4")
    state.save_record(config, record)
    device = loop.ensure_loop(config, record, Undo())
    assert kernel.loop_backing_file(device) == path
    return config, device


def autoclear(device: str) -> str:
    return Path(f"/sys/block/{os.path.basename(device)}/loop/autoclear").read_text().strip()


def test_release_loop_keeps_a_device_whose_node_is_bind_mounted(driver: Driver) -> None:
    """mountinfo shows a bind of /dev/loopN by devtmpfs (0:6) and the root /loopN, never by the
    device: release_loop took such a device for unused and detached it under the pod."""
    config, device = attached_volume(driver)
    published = driver.base / "mnt" / "published"
    published.touch()
    subprocess.run(["mount", "--bind", device, str(published)], check=True)
    try:
        assert [mount.mount_point for mount in kernel.mounts_of_device(device)] == [str(published)]
        assert loop.release_loop(config, "held") == []
        assert kernel.loop_backing_file(device) == config.backing_file("held"), "detached under a bind"
    finally:
        subprocess.run(["umount", str(published)], check=True)
    assert loop.release_loop(config, "held") == [device]
    assert kernel.loop_backing_file(device) is None


def test_release_loop_keeps_a_device_held_open_by_a_process(driver: Driver) -> None:
    """A detach of a device open elsewhere only marks it autoclear: it vanished as soon as its
    holder closed it, and its number went to the next volume. It is kept bound instead."""
    config, device = attached_volume(driver)
    with open(device, "rb") as node:
        holder = subprocess.Popen(["sleep", "60"], stdin=node)
    try:
        loop.release_loop(config, "held")
        assert kernel.loop_backing_file(device) == config.backing_file("held")
        assert autoclear(device) == "0", "the deferred detach was taken back"
        held: dict[str, str] = {}
        assert loop.release_loop(config, "held", held=held) == []
        assert held == {device: f"pid {holder.pid} (sleep)"}
    finally:
        holder.kill()
        holder.wait(10)
    assert kernel.loop_backing_file(device) == config.backing_file("held"), \
        "the device went with its holder's last close"
    assert loop.release_loop(config, "held") == [device]
    assert kernel.loop_backing_file(device) is None
