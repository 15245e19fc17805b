"""Who may use a volume, as the FlexVolume front end decides it (README, fsGroup and Threat model).

- volume_mount_group (the pod's fsGroup, VOLUME_MOUNT_GROUP): the volume's root directory goes
  to that group with the setgid bit and group rwx (mounting.apply_fs_group), and the files below
  it too when the root belonged to another group (the kubelet's OnRootMismatch rule);
- the pod's namespace (podInfoOnMount's `csi.storage.k8s.io/pod.namespace`): a volume belongs to
  the namespace that first published it (backing.check_namespace), and a pod of another
  namespace is refused with PERMISSION_DENIED unless an operator ran `flexvol share`.
"""

from __future__ import annotations

from flexvol.core import backing, mounting, state
from flexvol.core.config import Config
from flexvol.core.errors import Refused
from flexvol.core.options import VolumeSpec
from flexvol.csi.proto import csi_pb2
from flexvol.csi.status import Code, CsiError, invalid

POD_NAMESPACE = "csi.storage.k8s.io/pod.namespace"
POD_NAME = "csi.storage.k8s.io/pod.name"
MAX_GID = (1 << 32) - 2  # (gid_t)-1 means "unchanged" to chown


def mount_group(wanted: csi_pb2.VolumeCapability) -> int | None:
    """The numeric group of volume_mount_group, None when unset; INVALID_ARGUMENT otherwise."""
    text = wanted.mount.volume_mount_group if wanted.WhichOneof("access_type") == "mount" else ""
    if not text:
        return None
    # ASCII digits only: str.isdigit also takes "²" (int() then fails) and other scripts' digits.
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_GID:
        raise invalid(f"volume_mount_group {text[:40]!r} is not a numeric group id (0..{MAX_GID}): "
                      "flexvol gives the volume's root directory to that group")
    return int(text)


def apply_mount_group(target: str, volume_id: str, wanted: csi_pb2.VolumeCapability,
                      read_only: bool) -> bool:
    """Give the root of the volume mounted at `target` to volume_mount_group (setgid, group
    rwx); nothing for a read-only mount or no group. True if anything changed."""
    group = mount_group(wanted)
    if group is None:
        return False
    return mounting.apply_fs_group(target, VolumeSpec(volume_id, fs_group=group, read_only=read_only))


def check_namespace(config: Config, volume_id: str, context: dict[str, str]) -> None:
    """PERMISSION_DENIED when the pod's namespace is not the volume's owner; the first pod's
    namespace becomes the owner. Callers hold the volume's lock."""
    namespace = context.get(POD_NAMESPACE, "")
    record = state.load_record(config, volume_id) if namespace else None
    if record is None:
        return
    spec = VolumeSpec(volume_id, pod_namespace=namespace, pod_name=context.get(POD_NAME, ""))
    try:
        backing.check_namespace(config, record, spec)
    except Refused as error:
        raise CsiError(Code.PERMISSION_DENIED, str(error)) from None
