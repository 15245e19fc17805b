"""Inline ephemeral volumes: a pod's `csi:` volume that lives and dies with the pod.

The kubelet marks them in NodePublishVolume's volume_context and passes the pod's
volumeAttributes there too: `size` (a quantity, default 1Gi), `fsType` and `allocation`
(thin|thick), as a StorageClass's parameters are for CreateVolume; anything else is refused.
Its volume id is the kubelet's (csi-<64 hex digits>), mapped like any CSI name (names.py).
"""

from __future__ import annotations

from flexvol.core.errors import InvalidInput
from flexvol.core.filesystems import DEFAULT_FS_TYPE, FILESYSTEMS
from flexvol.core.options import ALLOCATION, DEFAULT_SIZE, SIZE, check_allocation, parse_size
from flexvol.csi.status import invalid

MARKER = "csi.storage.k8s.io/ephemeral"
# The kubelet's own keys (pod name, namespace, uid, service account): information only.
CO_PREFIX = "csi.storage.k8s.io/"
FS_TYPE = "fsType"
ATTRIBUTES = (SIZE, FS_TYPE, ALLOCATION)
RECORD_FLAG = "ephemeral"


def attributes(context: dict[str, str], capability_fs_type: str = "") -> tuple[int, str, str]:
    """(size in bytes, fsType, allocation) of an inline volume, or INVALID_ARGUMENT."""
    unknown = sorted(key for key in context if key not in ATTRIBUTES and not key.startswith(CO_PREFIX))
    if unknown:
        raise invalid(f"unknown volume attribute(s) {', '.join(repr(key[:60]) for key in unknown)}: "
                      f"an inline flexvol volume takes {', '.join(ATTRIBUTES)}")
    fs_type = context.get(FS_TYPE) or capability_fs_type or DEFAULT_FS_TYPE
    if fs_type not in FILESYSTEMS:
        raise invalid(f"fsType {fs_type[:40]!r} is not supported: use one of "
                      f"{', '.join(sorted(FILESYSTEMS))}")
    try:
        size = parse_size(context[SIZE]) if context.get(SIZE) else DEFAULT_SIZE
        allocation = check_allocation(context.get(ALLOCATION, ""))
    except InvalidInput as error:
        raise invalid(str(error)) from None
    minimum = FILESYSTEMS[fs_type].min_bytes
    if size < minimum:
        raise invalid(f"size {size} is below the {minimum} bytes {fs_type} needs")
    return size, fs_type, allocation
