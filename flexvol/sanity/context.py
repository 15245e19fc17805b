"""What every check gets: the driver's caller, the temporary node, the options and mode."""

from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass, field

from flexvol.sanity.caller import Caller
from flexvol.sanity.kubelet import Kubelet, Volume
from flexvol.sanity.node import Node

# Placeholders allowed in --options values.
VOLUME_PLACEHOLDER = "{volume}"
SIZE_PLACEHOLDER = "{size}"
DEFAULT_OPTIONS = {"volumeID": VOLUME_PLACEHOLDER, "size": SIZE_PLACEHOLDER}
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
        name = f"{self.node.volume_prefix}{next(self._serial)}"
        size = str(size_bytes or self.size_bytes)
        options = {key: value.replace(VOLUME_PLACEHOLDER, name).replace(SIZE_PLACEHOLDER, size)
                   for key, value in self.options.items()}
        return Volume(pv=f"pv-{name}", options=options, fs_type=fs_type, read_only=read_only)

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
