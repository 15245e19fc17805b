"""Names the CSI front end publishes, and how a CSI volume name becomes a flexvol volume id.

A CSI name is any string up to 128 characters (the external-provisioner sends pvc-<uid>); a
flexvol volume id is 1 to 63 characters of a-z, 0-9, '.', '_', '-' (options.check_volume_id).
A name that already is a valid id is used as it is, so `flexvol ls` shows pvc-<uid>. Any other
name maps to a readable slug of it plus 16 hex digits of its SHA-256, so different names get
different ids. The volume record keeps the name (RECORD_NAME): CreateVolume compares it, which
both makes the mapping reversible and catches the one-in-2^64 collision.
"""

from __future__ import annotations

from hashlib import sha256

from flexvol.core.errors import InvalidInput
from flexvol.core.options import VOLUME_ID_REST, check_volume_id

DRIVER_NAME = "loop.flexvol.io"
# The topology segment of the one node whose pool holds a volume (NodeGetInfo, CreateVolume).
TOPOLOGY_KEY = "topology.flexvol.io/node"
# Record fields of volumes made through CSI.
RECORD_NAME = "csi_name"
CREATED_BY = "csi"
HASH_DIGITS = 16
SLUG_CHARS = 40


def is_volume_id(value: str) -> bool:
    try:
        check_volume_id(value)
    except InvalidInput:
        return False
    return True


def volume_id_for(name: str) -> str:
    """The flexvol volume id of the CSI volume `name` (the same name always gives the same id)."""
    if is_volume_id(name):
        return name
    slug = "".join(char if char in VOLUME_ID_REST else "-" for char in name.lower())
    slug = slug[:SLUG_CHARS].strip("._-")
    digest = sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_DIGITS]
    return f"{slug}-{digest}" if slug else f"csi-{digest}"
