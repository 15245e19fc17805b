"""The driver the agent installs answers the kubelet like the one install.sh installs."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import TEST_PREFIX
from tests.helpers.driver import MINIMAL_PATH


def test_installed_driver_answers_init() -> None:
    base = Path(tempfile.mkdtemp(prefix=f"{TEST_PREFIX}agent-install-", dir="/tmp"))
    try:
        from flexvol.provisioning.install import install_driver

        path, _ = install_driver(str(base / "plugins"), str(base / "lib"), str(base / "data"), attach=True)
        done = subprocess.run([path, "init"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env={"PATH": MINIMAL_PATH}, timeout=60,
                              check=False)
        reply = json.loads(done.stdout)
        assert done.returncode == 0, done.stdout
        assert reply["status"] == "Success"
        assert reply["capabilities"]["attach"] is True
    finally:
        shutil.rmtree(base, ignore_errors=True)
