"""Shell floors for the benchmark: the same kernel steps as the driver, with no driver logic.

A new volume is thick by default: the driver reserves its blocks right after formatting it, so
the fresh floor does the same `fallocate`.

Each floor is a bash script; the "Python floor" variant adds one bare interpreter start (with
the installed driver's flags) per driver call the scenario makes.
"""

from __future__ import annotations

PYTHON_START = "/usr/bin/python3 -ISB -c pass"

FRESH = """
set -e
truncate -s {size} {file}
dev=$(losetup --find --show --direct-io=on {file})
{py}
mkfs.ext4 -q -m 0 -E nodiscard "$dev"
fallocate -l {size} {file}
mkdir -p {target}
mount -t ext4 -o nosuid,nodev,rw -w "$dev" {target}
{py}
umount {target}
losetup --detach "$dev"
rm -f {file}
"""

WARM = """
set -e
dev=$(losetup --find --show --direct-io=on {file})
{py}
mkdir -p {target}
mount -t ext4 -o nosuid,nodev,rw -w "$dev" {target}
{py}
umount {target}
losetup --detach "$dev"
"""

# attach, waitforattach, mountdevice, mount, unmount, unmountdevice, detach: 7 calls.
ATTACH = """
set -e
{py}
{py}
dev=$(losetup --find --show --direct-io=on {file})
mkdir -p {global_dir} {target}
mount -t ext4 -o nosuid,nodev,rw -w "$dev" {global_dir}
{py}
mount -t ext4 -o nosuid,nodev,rw -w "$dev" {target}
{py}
umount {target}
{py}
umount {global_dir}
losetup --detach "$dev"
{py}
{py}
"""


def render(template: str, *, python: bool, **values: str) -> str:
    return template.format(py=PYTHON_START if python else ":", **values)


# The CSI lifecycle: each RPC's kernel steps as the plugin does them (CreateVolume formats and
# reserves the thick file, then lets its loop device go; the kubelet made the staging dir).
CSI_STEPS = (
    ("CreateVolume", """
truncate -s {size} {file}
dev=$(losetup --find --show --direct-io=on {file})
mkfs.ext4 -q -m 0 -E nodiscard "$dev"
fallocate -l {size} {file}
losetup --detach "$dev"
"""),
    ("NodeStageVolume", """
dev=$(losetup --find --show --direct-io=on {file})
mount -t ext4 -o nosuid,nodev,rw -w "$dev" {staging}
"""),
    ("NodePublishVolume", """
mkdir {target}
mount --bind {staging} {target}
"""),
    ("NodeUnpublishVolume", """
umount {target}
rmdir {target}
"""),
    ("NodeUnstageVolume", """
umount {staging}
losetup --detach "$dev"
"""),
    ("DeleteVolume", """
rm -f {file}
"""),
)


def render_csi(**values: str) -> str:
    """One script that prints `$EPOCHREALTIME` before the first group of steps and after each."""
    parts = ["set -e", "stamps=$EPOCHREALTIME"]
    for _rpc, steps in CSI_STEPS:
        parts += [steps.format(**values).strip(), 'stamps="$stamps $EPOCHREALTIME"']
    parts.append('echo "$stamps"')
    return "\n".join(parts) + "\n"
