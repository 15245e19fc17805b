"""The official CSI conformance suite (kubernetes-csi/csi-test csi-sanity, pinned in
scripts/csi-sanity.sh) against `flexvol csi` on real loop devices, with each access type: mount
(filesystems) and block (raw block volumes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "csi-sanity.sh"
CACHED = Path(os.environ.get("FLEXVOL_CSI_CACHE", "/var/cache/flexvol-csi")) / "bin" / "csi-sanity"


@pytest.mark.csi
@pytest.mark.skipif(not CACHED.exists() and shutil.which("go") is None,
                    reason="csi-sanity is not built and Go is not installed to build it")
@pytest.mark.parametrize("access_type", ["mount", "block"])
def test_csi_sanity(access_type: str) -> None:
    """Every spec for the capabilities flexvol advertises passes; the rest skip."""
    env = {**os.environ, "FLEXVOL": str(Path(sys.executable).parent / "flexvol")}
    done = subprocess.run([str(SCRIPT), access_type, "--ginkgo.no-color"], capture_output=True, text=True,
                          env=env, timeout=1800, check=False)
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, tail
    assert "0 Failed" in done.stdout, tail
