"""The agent's volume deletion on real loop devices: refused while mounted or attached."""

from __future__ import annotations

import subprocess

import pytest

from flexvol.core.config import Config
from flexvol.core.errors import Refused
from flexvol.provisioning.deletion import delete_volume
from tests.helpers.driver import Driver, options


def test_refuses_while_mounted_or_attached_then_deletes(driver: Driver) -> None:
    target = driver.dir("pod1")
    driver.ok("mount", target, options("pvc-1", size="64Mi"))
    (driver.base / "mnt" / "pod1" / "keep").write_text("data")
    config = Config(str(driver.root))
    with pytest.raises(Refused, match=f"volume pvc-1 is in use: mounted at {target}"):
        delete_volume(config, "pvc-1")
    assert driver.backing_file("pvc-1").exists()
    # unmounted by hand: the loop device stays attached, which still refuses
    subprocess.run(["umount", target], check=True)
    [device] = driver.loops()
    with pytest.raises(Refused, match=f"in use: attached as {device}"):
        delete_volume(config, "pvc-1")
    assert driver.backing_file("pvc-1").exists()
    driver.ok("unmount", target)
    assert driver.loops() == []
    assert delete_volume(config, "pvc-1") is True
    assert not driver.backing_file("pvc-1").exists()
    assert not (driver.root / "records" / "pvc-1.json").exists()
    # the volume is gone: mounting it again makes a new, empty one
    driver.ok("mount", target, options("pvc-1", size="64Mi"))
    assert not (driver.base / "mnt" / "pod1" / "keep").exists()
    driver.ok("unmount", target)


def test_metrics_show_a_mounted_volume_and_the_calls_that_made_it(driver: Driver) -> None:
    from prometheus_client import generate_latest

    from flexvol.provisioning.metrics import registry_for

    target = driver.dir("pod1")
    driver.ok("mount", target, options("v1", size="64Mi"))
    registry = registry_for(Config(str(driver.root)))
    text = generate_latest(registry).decode()
    assert 'flexvol_volume_mounted{volume="v1"} 1.0' in text
    assert 'flexvol_driver_calls_total{status="Success",verb="mount"} 1.0' in text
    driver.ok("unmount", target)
    text = generate_latest(registry).decode()
    assert 'flexvol_volume_mounted{volume="v1"} 0.0' in text
    assert 'flexvol_driver_calls_total{status="Success",verb="unmount"} 1.0' in text
