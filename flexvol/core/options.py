"""Raw options (strings from the kubelet) to a validated VolumeSpec.

Every refusal names the option and says what would be accepted; nothing here touches disk.
"""

from __future__ import annotations

from flexvol.core.errors import InvalidInput
from flexvol.core.filesystems import ALLOWED_MOUNT_OPTIONS, DEFAULT_FS_TYPE, FILESYSTEMS
from flexvol.core.quantity import human_bytes, parse_quantity

# Keys of the options the kubelet passes (docs/flexvolume.md section 4) and a PV's spec carries.
FS_TYPE = "kubernetes.io/fsType"
READ_WRITE = "kubernetes.io/readwrite"
PV_OR_VOLUME_NAME = "kubernetes.io/pvOrVolumeName"
POD_NAME = "kubernetes.io/pod.name"
POD_NAMESPACE = "kubernetes.io/pod.namespace"
POD_UID = "kubernetes.io/pod.uid"
SERVICE_ACCOUNT = "kubernetes.io/serviceAccount.name"
FS_GROUP = "kubernetes.io/mounterArgs.FsGroup"
# The key before Kubernetes 1.15 (commit 5b97b2860d9b); still read, docs/flexvolume.md section 8.6.
FS_GROUP_LEGACY = "kubernetes.io/fsGroup"
SECRET_PREFIX = "kubernetes.io/secret/"
VOLUME_ID = "volumeID"
SIZE = "size"
MOUNT_OPTIONS = "mountOptions"
# "thick": every block reserved (fallocate) when the volume is made, so its writes never meet a
# full pool; "thin": a sparse file that takes blocks as it is written, and fails with I/O
# errors if other data fills the pool first (README, Capacity model).
ALLOCATION = "allocation"
THIN = "thin"
THICK = "thick"
ALLOCATIONS = (THIN, THICK)
# A provisioned PV whose claim had a data source: its volume is made at the first mount as a copy
# of that snapshot (restore) or of that volume on the same node (clone), never blank.
FROM_SNAPSHOT = "fromSnapshot"
FROM_VOLUME = "fromVolume"
DEFAULT_ALLOCATION = THICK
DEFAULT_SIZE = 1 << 30
# Loop devices count 512-byte sectors; round to whole 4 KiB pages so every filesystem block fits.
SIZE_ALIGNMENT = 4096
VOLUME_ID_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
VOLUME_ID_REST = VOLUME_ID_FIRST | frozenset("._-")
PV_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class VolumeSpec:
    """What one call asks of one volume."""

    __slots__ = (
        "allocation",
        "from_snapshot",
        "from_volume",
        "fs_group",
        "fs_type",
        "mount_options",
        "pod_name",
        "pod_namespace",
        "pod_uid",
        "pv_name",
        "read_only",
        "secrets",
        "size_bytes",
        "size_given",
        "volume_id",
    )

    def __init__(self, volume_id: str, *, size_bytes: int = DEFAULT_SIZE, size_given: bool = False,
                 fs_type: str = DEFAULT_FS_TYPE, read_only: bool = False,
                 mount_options: tuple[str, ...] = (), fs_group: int | None = None,
                 pv_name: str = "", pod_uid: str = "", pod_name: str = "", pod_namespace: str = "",
                 secrets: dict[str, bytes] | None = None,
                 allocation: str = DEFAULT_ALLOCATION, from_snapshot: str = "",
                 from_volume: str = "") -> None:
        self.volume_id = volume_id
        self.size_bytes = size_bytes
        self.size_given = size_given
        self.fs_type = fs_type
        self.read_only = read_only
        self.mount_options = mount_options
        self.fs_group = fs_group
        self.pv_name = pv_name
        self.pod_uid = pod_uid
        self.pod_name = pod_name
        self.pod_namespace = pod_namespace
        # decoded secret values: kept in memory only, never logged or stored
        self.secrets = secrets or {}
        # only for a volume this call creates: an existing one keeps what its record says
        self.allocation = allocation
        # only for a volume this call creates: its source (options FROM_SNAPSHOT, FROM_VOLUME)
        self.from_snapshot = from_snapshot
        self.from_volume = from_volume

    @property
    def mode(self) -> str:
        return "ro" if self.read_only else "rw"


def parse_spec(options: dict[str, str]) -> VolumeSpec:
    """Validate the options of one call into a VolumeSpec, or raise InvalidInput."""
    volume_id = check_volume_id(options.get(VOLUME_ID))
    size_text = options.get(SIZE, "")
    size_given = bool(size_text)
    size_bytes = parse_size(size_text) if size_given else DEFAULT_SIZE
    fs_type = check_fs_type(options.get(FS_TYPE, ""))
    filesystem = FILESYSTEMS[fs_type]
    if size_bytes < filesystem.min_bytes:
        raise InvalidInput(
            f"size {human_bytes(size_bytes)} of volume {volume_id} is below the "
            f"{human_bytes(filesystem.min_bytes)} that {fs_type} needs",
            f"set size to at least {human_bytes(filesystem.min_bytes)} or choose another fsType")
    return VolumeSpec(
        volume_id,
        size_bytes=size_bytes,
        size_given=size_given,
        fs_type=fs_type,
        read_only=check_read_write(options.get(READ_WRITE, "")),
        mount_options=check_mount_options(options.get(MOUNT_OPTIONS, "")),
        fs_group=check_fs_group(options),
        pv_name=options.get(PV_OR_VOLUME_NAME, ""),
        pod_uid=options.get(POD_UID, ""),
        pod_name=options.get(POD_NAME, ""),
        pod_namespace=options.get(POD_NAMESPACE, ""),
        secrets=decode_secrets(options),
        allocation=check_allocation(options.get(ALLOCATION, "")),
        **check_source(options, volume_id),
    )


def check_source(options: dict[str, str], volume_id: str) -> dict[str, str]:
    """The FROM_SNAPSHOT or FROM_VOLUME option, checked as a name: {} when neither is given."""
    found = {key: options[key] for key in (FROM_SNAPSHOT, FROM_VOLUME) if options.get(key)}
    if not found:
        return {}
    if len(found) > 1:
        raise InvalidInput(f"options {FROM_SNAPSHOT!r} and {FROM_VOLUME!r} are both set",
                           "a volume is made from one source")
    [(key, name)] = found.items()
    if (len(name) > 63 or name[0] not in VOLUME_ID_FIRST
            or any(char not in VOLUME_ID_REST for char in name)):
        raise InvalidInput(f"option {key!r} is invalid: {name[:80]!r}",
                           "name a snapshot or volume: 1 to 63 characters of a-z, 0-9, '.', '_' or '-'")
    if key == FROM_VOLUME and name == volume_id:
        raise InvalidInput(f"volume {volume_id} cannot be a clone of itself", f"fix option {key!r}")
    return {"from_snapshot" if key == FROM_SNAPSHOT else "from_volume": name}


def check_volume_id(value: str | None) -> str:
    if value is None or value == "":
        # Not derived from the pod's volume name: two pods' inline volumes named alike would
        # then share one backing file.
        raise InvalidInput(f"option {VOLUME_ID!r} is missing",
                           'set flexVolume.options.volumeID, e.g. "volumeID": "data-1"')
    if (len(value) > 63 or value[0] not in VOLUME_ID_FIRST
            or any(char not in VOLUME_ID_REST for char in value)):
        raise InvalidInput(
            f"option {VOLUME_ID!r} is invalid: {value[:80]!r}",
            "use 1 to 63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit")
    return value


def parse_size(text: str) -> int:
    size = parse_quantity(text, "option 'size'")
    if size <= 0:
        raise InvalidInput(f"option 'size' must be positive, got {text!r}", "use e.g. 1Gi")
    return -(-size // SIZE_ALIGNMENT) * SIZE_ALIGNMENT


def check_fs_type(value: str) -> str:
    if value == "":
        return DEFAULT_FS_TYPE
    if value not in FILESYSTEMS:
        supported = ", ".join(sorted(FILESYSTEMS))
        raise InvalidInput(f"fsType {value[:40]!r} is not supported", f"use one of: {supported}")
    return value


def check_allocation(value: str) -> str:
    if value == "":
        return DEFAULT_ALLOCATION
    if value not in ALLOCATIONS:
        raise InvalidInput(f"option {ALLOCATION!r} must be {THIN!r} or {THICK!r}, got {value[:40]!r}",
                           f"{THICK!r} (the default) reserves every block when the volume is made; "
                           f"{THIN!r} takes blocks from the pool as it is written")
    return value


def check_read_write(value: str) -> bool:
    if value in ("", "rw"):
        return False
    if value == "ro":
        return True
    raise InvalidInput(f"option {READ_WRITE!r} must be 'ro' or 'rw', got {value[:40]!r}")


def check_mount_options(value: str) -> tuple[str, ...]:
    if not value:
        return ()
    chosen: list[str] = []
    for option in value.split(","):
        option = option.strip()
        if not option:
            continue
        if option not in ALLOWED_MOUNT_OPTIONS:
            allowed = ", ".join(sorted(ALLOWED_MOUNT_OPTIONS))
            raise InvalidInput(f"mount option {option[:40]!r} is not allowed",
                               f"mountOptions may use: {allowed}")
        if option not in chosen:
            chosen.append(option)
    return tuple(chosen)


def check_fs_group(options: dict[str, str]) -> int | None:
    for key in (FS_GROUP, FS_GROUP_LEGACY):
        value = options.get(key, "")
        if value:
            if not value.isascii() or not value.isdigit() or int(value) > 0xFFFFFFFE:
                raise InvalidInput(f"option {key!r} must be a numeric group id, got {value[:40]!r}")
            return int(value)
    return None


def decode_secrets(options: dict[str, str]) -> dict[str, bytes]:
    """Base64-decode `kubernetes.io/secret/*` values (docs/flexvolume.md section 4.5); keys only in errors."""
    secrets: dict[str, bytes] = {}
    for key, value in options.items():
        if key.startswith(SECRET_PREFIX):
            name = key[len(SECRET_PREFIX):]
            import binascii  # only for calls that carry secrets

            try:
                secrets[name] = binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
            except (binascii.Error, UnicodeEncodeError):
                raise InvalidInput(f"secret {name[:60]!r} is not valid base64",
                                   "the kubelet base64-encodes secret values; check the Secret") from None
    return secrets


def check_pv_name(value: str) -> str:
    """PV names key the attach records; they are DNS subdomain names or pod volume names."""
    if not value:
        raise InvalidInput(f"option {PV_OR_VOLUME_NAME!r} is missing",
                           "the kubelet always sends it; pass the PV name")
    if len(value) > 253 or value[0] == "." or any(char not in PV_NAME_CHARS for char in value):
        raise InvalidInput(f"PV name {value[:80]!r} is invalid",
                           "use a Kubernetes object name: a-z, 0-9, '-' and '.'")
    return value
