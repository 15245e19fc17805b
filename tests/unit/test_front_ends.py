"""Which front end a volume is used through, as `ls -o wide` and `show` say it."""

from __future__ import annotations

from flexvol.core.records import Record
from flexvol.toolkit.inventory import front_ends

KUBELET = "/var/lib/kubelet"


def rec(csi_name: str | None = None) -> Record:
    record = Record("data-1", 1 << 20, "ext4", "2026-01-01T00:00:00Z")
    record.csi_name = csi_name
    return record


def test_mounts_name_the_front_end() -> None:
    csi_stage = f"{KUBELET}/plugins/kubernetes.io/csi/loop.flexvol.io/0a1b/globalmount"
    csi_pod = f"{KUBELET}/pods/7c2e/volumes/kubernetes.io~csi/pvc-1/mount"
    flex_pod = f"{KUBELET}/pods/9d3f/volumes/flexvol~loop/data"
    flex_global = f"{KUBELET}/plugins/kubernetes.io/flexvolume/flexvol/loop/mounts/pv-1"
    assert front_ends(rec(), [csi_stage, csi_pod]) == ["csi"]
    assert front_ends(rec(), [flex_pod]) == ["flexvolume"]
    assert front_ends(rec(), [flex_global, flex_pod]) == ["flexvolume"]
    # One volume mounted through both (a FlexVolume pod naming a CSI-made volume's id).
    assert front_ends(rec("pvc-1"), [csi_pod, flex_pod]) == ["csi", "flexvolume"]


def test_an_idle_volume_names_who_made_it() -> None:
    assert front_ends(rec("pvc-1"), []) == ["csi"]
    assert front_ends(rec(), []) == ["flexvolume"]
    assert front_ends(None, []) == []
    # A mount dir of neither kind (a hand-made or test dir) falls back to the record.
    assert front_ends(rec("x"), ["/mnt/somewhere"]) == ["csi"]
