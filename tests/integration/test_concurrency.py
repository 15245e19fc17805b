"""Concurrent callers (docs/flexvolume.md section 6): per-volume serialisation, parallel volumes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.helpers.driver import Driver, options


def test_same_volume_from_eight_callers_gives_one_mount(driver: Driver) -> None:
    target = driver.dir("shared")
    spec = options("c1")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: driver.call("mount", target, spec), range(8)))
    assert [r.status for r in results] == ["Success"] * 8, [r.output for r in results]
    assert [m.mount_point for m in driver.mounts()] == [target]
    assert len(driver.loops()) == 1
    formats = [line for line in (driver.root / "log" / "calls.jsonl").read_text().splitlines()
               if "formatted ext4" in line]
    assert len(formats) == 1, "the volume must be formatted exactly once"
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: driver.call("unmount", target), range(8)))
    assert all(r.status == "Success" for r in results)
    assert driver.mounts() == [] and driver.loops() == []


def test_one_volume_into_eight_pod_dirs_at_once_shares_one_loop(driver: Driver) -> None:
    spec = options("c2")
    targets = [driver.dir(f"pod{i}") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda t: driver.call("mount", t, spec), targets))
    assert all(r.status == "Success" for r in results), [r.output for r in results]
    assert sorted(m.mount_point for m in driver.mounts()) == sorted(targets)
    assert len(driver.loops()) == 1
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda t: driver.ok("unmount", t), targets))
    assert driver.mounts() == [] and driver.loops() == []


def test_sixteen_volumes_at_once_give_sixteen_mounts(driver: Driver) -> None:
    jobs = [(driver.dir(f"v{i}"), options(f"p{i}", size="16Mi")) for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda job: driver.call("mount", *job), jobs))
    assert all(r.status == "Success" for r in results), [r.output for r in results if r.status != "Success"]
    assert len(driver.mounts()) == 16
    loops = driver.loops()
    assert len(loops) == 16 and len(set(loops)) == 16
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda job: driver.ok("unmount", job[0]), jobs))
    assert driver.mounts() == [] and driver.loops() == []
