"""What every check gets: the driver's caller, the temporary node, the options and mode."""

from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass, field

from flexvol.core.errors import FlexvolError
from flexvol.sanity.caller import Caller
from flexvol.sanity.kubelet import Kubelet, Volume
from flexvol.sanity.node import Node

# Placeholders allowed in --options values.
VOLUME_PLACEHOLDER = "{volume}"
SIZE_PLACEHOLDER = "{size}"
VOLUME_ID = "volumeID"
SIZE_KEY = "size"
FS_TYPE_KEY = "kubernetes.io/fsType"
DEFAULT_OPTIONS = {VOLUME_ID: VOLUME_PLACEHOLDER, SIZE_KEY: SIZE_PLACEHOLDER}
MiB = 1 << 20


@dataclass
class Context:
    caller: Caller
    node: Node
    attach: bool
    capabilities: dict[str, bool]
    options: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_OPTIONS))
    repeat: int = 3
    size_bytes: int = 64 * MiB
    _serial: itertools.count = field(default_factory=lambda: itertools.count(1))

    def kubelet(self) -> Kubelet:
        """A fresh plugin object: the "Not supported" cache starts empty, as after a re-probe."""
        return Kubelet(self.caller, self.node, self.attach)

    def volume(self, *, size_bytes: int | None = None, fs_type: str = "ext4",
               read_only: bool = False) -> Volume:
        """A volume of its own for one check. Options without the placeholders still get a
        volume id of their own (the user's, suffixed), so that no check meets a volume an earlier
        one formatted; a size the check needs (`size_bytes`, e.g. xfs's minimum) wins over a
        smaller fixed size in the options."""
        name = f"{self.node.volume_prefix}{next(self._serial)}"
        fixed = self.fixed_size()
        size = fixed or size_bytes or self.size_bytes
        options = {key: value.replace(VOLUME_PLACEHOLDER, name).replace(SIZE_PLACEHOLDER, str(size))
                   for key, value in self.options.items()}
        user_id = self.options.get(VOLUME_ID, "")
        if user_id and VOLUME_PLACEHOLDER not in user_id:
            options[VOLUME_ID] = f"{user_id}-{name}"
        if fixed and size_bytes and fixed < size_bytes:
            size = size_bytes
            options[SIZE_KEY] = str(size)
        return Volume(pv=f"pv-{name}", options=options, fs_type=self.pinned_fs_type() or fs_type,
                      read_only=read_only, size_bytes=size)

    def fixed_size(self) -> int | None:
        """The size the user's options fix for every volume (no placeholder), if readable."""
        from flexvol.core.quantity import parse_quantity

        text = self.options.get(SIZE_KEY, "")
        if not text or SIZE_PLACEHOLDER in text:
            return None
        try:
            return parse_quantity(text)
        except FlexvolError:
            return None

    def pinned_fs_type(self) -> str:
        """The fsType the user's options set for every volume, "" when the checks choose."""
        return self.options.get(FS_TYPE_KEY, "")

    def pod(self) -> str:
        return str(uuid.uuid4())

    def capability(self, name: str, default: bool) -> bool:
        for key, value in self.capabilities.items():
            if key.lower() == name.lower():
                return bool(value)
        return default

    def scratch_dir(self, name: str) -> str:
        path = os.path.join(self.node.root, "scratch", name)
        os.makedirs(path, exist_ok=True)
        return path
