"""Where things live: the data root and the paths under it, plus install-time defaults.

install.sh bakes the data root and the attach choice into the installed driver; an explicit
FLEXVOL_ROOT in the environment still wins so operators and tests can point elsewhere.
"""

from __future__ import annotations

import os

DEFAULT_DATA_ROOT = "/var/lib/flexvol"
DRIVER_NAME = "flexvol/loop"
# Tools are found here, not on the caller's PATH (the kubelet's environment varies).
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Config:
    """Paths under one data root. Directories are created on first use by `state`."""

    __slots__ = (
        "attach",
        "data_root",
        "journal_path",
        "locks_dir",
        "log_dir",
        "overcommit_path",
        "pvs_dir",
        "records_dir",
        "scratch_dir",
        "targets_dir",
        "volumes_dir",
    )

    def __init__(self, data_root: str, attach: bool = False) -> None:
        self.data_root = os.path.abspath(data_root)
        self.attach = attach
        self.volumes_dir = os.path.join(self.data_root, "volumes")
        self.records_dir = os.path.join(self.data_root, "records")
        self.pvs_dir = os.path.join(self.data_root, "pvs")
        self.targets_dir = os.path.join(self.data_root, "targets")
        self.locks_dir = os.path.join(self.data_root, "locks")
        self.log_dir = os.path.join(self.data_root, "log")
        self.journal_path = os.path.join(self.log_dir, "calls.jsonl")
        # the budget: committed volume sizes may reach the pool's size times this ratio
        self.overcommit_path = os.path.join(self.data_root, "overcommit")
        # private mount points for offline growth of xfs/btrfs
        self.scratch_dir = os.path.join(self.data_root, "scratch")

    def backing_file(self, volume_id: str) -> str:
        return os.path.join(self.volumes_dir, volume_id + ".img")

    def record_path(self, volume_id: str) -> str:
        return os.path.join(self.records_dir, volume_id + ".json")

    def lock_path(self, volume_id: str) -> str:
        return os.path.join(self.locks_dir, volume_id + ".lock")

    def volume_id_of_backing_file(self, path: str) -> str | None:
        """The volume id if `path` (as the kernel reports it) is one of our backing files."""
        if path.endswith(" (deleted)"):
            path = path[: -len(" (deleted)")]
        directory, name = os.path.split(path)
        if not name.endswith(".img"):
            return None
        if directory not in (self.volumes_dir, os.path.realpath(self.volumes_dir)):
            return None
        return name[: -len(".img")]


def load(data_root: str | None = None, attach: bool | None = None) -> Config:
    """The config for this call: environment first, then the baked-in install defaults."""
    root = os.environ.get("FLEXVOL_ROOT") or data_root or DEFAULT_DATA_ROOT
    attach_env = os.environ.get("FLEXVOL_ATTACH")
    if attach_env is not None and attach_env != "":
        attach = attach_env.lower() in ("1", "true", "yes")
    return Config(root, bool(attach))
