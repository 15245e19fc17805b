"""The e2e harness's cleanup lifts the write guards a failed scenario leaves on unmounted
volume dirs, for the FlexVolume dirs and the CSI ones (a pod's .../kubernetes.io~csi/<pv>/mount
and the staging dir .../plugins/kubernetes.io/csi/<driver>/<hash>/globalmount), so the
cluster's temporary root can be removed."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

from flexvol.core import guard
from tests.conftest import TEST_PREFIX
from tests.e2e.harness import Cluster

DIRS = ("pods/uid-1/volumes/flexvol~loop/vol-a",
        "pods/uid-2/volumes/kubernetes.io~csi/pvc-1/mount",
        "plugins/kubernetes.io/csi/loop.flexvol.io/0123abcd/globalmount")


def test_csi_write_guards_left_by_a_failed_scenario_are_lifted() -> None:
    root = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}harness-guards-", dir="/tmp"))
    targets = [root / d for d in DIRS]
    try:
        for target in targets:
            target.mkdir(parents=True)
            assert guard.set_write_guard(str(target))
        errors = Cluster._lift_write_guards(SimpleNamespace(kubelet_root=root))  # type: ignore[arg-type]
        assert errors == []
        assert [t for t in targets if guard.is_guarded(str(t))] == []
    finally:
        for target in targets:
            if target.exists():
                guard.lift_write_guard(str(target))
        shutil.rmtree(root)
