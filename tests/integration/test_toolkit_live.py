"""What operators watch live: ls with PV and claim, show as describe, ls --watch, calls --since
--follow, top and the agent's I/O metrics, on real loop devices and mounts."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from prometheus_client import generate_latest

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.provisioning.metrics import registry_for
from tests.helpers.cli import ENV, flexvol, flexvol_json
from tests.helpers.driver import Driver, options

MiB = 1 << 20
RUN_CLI = [sys.executable, "-c", "from flexvol.cli.main import run; run()"]


def as_provisioned(driver: Driver, volume_id: str, pv: str, claim: str) -> None:
    """What the node agent writes into the record of a volume it provisioned for a claim."""
    config = Config(str(driver.root))
    record = state.load_record(config, volume_id)
    assert record is not None
    record.pv_name, record.pv_uid, record.claim = pv, "uid-" + pv, claim
    record.namespace = claim.split("/")[0]
    state.save_record(config, record)


def write_and_sync(path: str, size: int) -> None:
    with open(path, "wb") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())


def test_ls_shows_the_pv_and_claim_using_each_volume(driver: Driver) -> None:
    """Missing: ls named only the pod; it now names the PV and the claim (namespace/name)."""
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1", pv="pvc-1"))
    as_provisioned(driver, "v1", "pvc-1", "shop/data")
    driver.ok("mount", driver.dir("pod2"), options("v2", pv="static-pv"))
    table = flexvol("ls", root=str(driver.root)).stdout
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "pvc-1 (shop/data)" in rows["v1"] and "static-pv" in rows["v2"], table
    views = {item["volume_id"]: item for item in flexvol_json("ls", root=str(driver.root))}
    assert views["v1"]["pvs"] == ["pvc-1"] and views["v1"]["claim"] == "shop/data"
    assert views["v2"]["pvs"] == ["static-pv"] and views["v2"]["claim"] == ""
    driver.ok("unmount", target)
    driver.ok("unmount", driver.dir("pod2"))


def test_show_reads_like_describe_with_events_and_ages(driver: Driver) -> None:
    """Missing: show printed a table and raw JSON; it now gives facts, then calls and problems
    as events (TYPE REASON AGE MESSAGE)."""
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1", pv="pvc-1"))
    as_provisioned(driver, "v1", "pvc-1", "shop/data")
    # a refused read-only mount beside the read-write one: a Warning event
    driver.fail("mount", driver.dir("ro"), options("v1", pv="pvc-1", mode="ro"))
    out = flexvol("show", "v1", root=str(driver.root)).stdout
    facts = dict(line.split(":", 1) for line in out.split("Events:")[0].splitlines() if ":" in line)
    assert facts["Name"].strip() == "v1" and facts["State"].strip() == "mounted"
    assert facts["PV"].strip() == "pvc-1" and facts["Claim"].strip() == "shop/data"
    assert facts["Namespace"].strip() == "shop" and facts["Filesystem"].strip().startswith("ext4 (UUID")
    assert target in out
    events = out.split("Events:")[1].splitlines()
    assert events[1].split() == ["TYPE", "REASON", "AGE", "MESSAGE"], out
    mount = next(line.split() for line in events if " Mount " in line)
    assert mount[0] == "Normal" and mount[2].endswith("s"), events
    failed = next(line.split() for line in events if "FailedMount" in line)
    assert failed[0] == "Warning" and "refusing" in " ".join(failed)
    body = flexvol_json("show", "v1", root=str(driver.root))
    assert {event["reason"] for event in body["events"]} >= {"Mount", "FailedMount"}
    driver.ok("unmount", target)


def test_ls_watch_prints_a_new_table_only_when_it_changes(driver: Driver) -> None:
    """Missing: ls --watch; off a terminal it prints one table per change, not one per look."""
    assert flexvol("create", "v1", "--size", "64Mi", "--thin", root=str(driver.root)).exit_code == 0
    env = {**os.environ, **ENV, "FLEXVOL_ROOT": str(driver.root)}
    watcher = subprocess.Popen([*RUN_CLI, "ls", "--watch", "--interval", "0.2", "--watch-for", "4"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        time.sleep(1.5)
        target = driver.dir("pod")
        driver.ok("mount", target, options("v1"))
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, err
    tables = [line for line in out.splitlines() if line.startswith("VOLUME")]
    rows = [line for line in out.splitlines() if line.startswith("v1 ")]
    # about 20 looks: a table for the idle volume, then one per change once it is mounted
    # (the mount, and the allocated bytes while the new filesystem settles), never a repeat
    assert len(tables) == len(rows) and 2 <= len(rows) <= 6, out
    assert all(first != second for first, second in itertools.pairwise(rows)), out
    assert rows[0].rstrip().endswith("idle") and rows[-1].rstrip().endswith("mounted"), out
    driver.ok("unmount", target)


def test_calls_since_and_follow(driver: Driver) -> None:
    """Missing: calls --since DURATION and --follow (tail the journal until stopped)."""
    config = Config(str(driver.root))
    state.ensure_dirs(config)
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    with open(config.journal_path, "a") as handle:
        handle.write(json.dumps({"time": old, "verb": "mount", "volume": "old-one", "status": "Success",
                                 "ms": 5}) + "\n")
    driver.ok("mount", driver.dir("pod"), options("v1"))
    recent = flexvol_json("calls", "--since", "10m", root=str(driver.root))
    assert [entry["volume"] for entry in recent] == ["v1"]
    assert len(flexvol_json("calls", "--since", "2h", root=str(driver.root))) == 2
    bad = flexvol("calls", "--since", "ten minutes", root=str(driver.root))
    assert bad.exit_code == 1 and "--since 10m" in bad.output and "Traceback" not in bad.output

    def later() -> None:
        time.sleep(0.8)
        driver.ok("unmount", driver.dir("pod"))

    writer = threading.Thread(target=later)
    writer.start()
    try:
        followed = flexvol("calls", "--since", "10m", "--follow", "--follow-for", "3", "--json",
                           root=str(driver.root))
    finally:
        writer.join()
    assert followed.exit_code == 0, followed.output
    lines = [json.loads(line) for line in followed.stdout.splitlines()]
    assert [(entry["verb"], entry["volume"]) for entry in lines] == [("mount", "v1"), ("unmount", "v1")]


def test_top_and_metrics_see_a_volumes_writes(driver: Driver) -> None:
    """Missing: live I/O per volume (flexvol top) and the agent's I/O metrics, from the loop
    device's block statistics: writes to a mounted volume move its counters."""
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1", pv="pvc-1"))
    as_provisioned(driver, "v1", "pvc-1", "shop/data")
    driver.ok("mount", driver.dir("quiet"), options("v2"))
    registry = registry_for(Config(str(driver.root)))

    def written() -> float:
        for line in generate_latest(registry).decode().splitlines():
            if line.startswith('flexvol_volume_write_bytes_total{claim="shop/data",pv="pvc-1",volume="v1"}'):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError("no write counter for v1")

    before = written()
    writer = threading.Thread(target=lambda: (time.sleep(0.3), write_and_sync(f"{target}/data", 8 * MiB)))
    writer.start()
    try:
        sample = flexvol_json("top", "--interval", "2", root=str(driver.root))
    finally:
        writer.join()
    assert written() - before >= 8 * MiB
    rows = {row["volume_id"]: row for row in sample}
    assert rows["v1"]["write_bytes_per_second"] >= 2 * MiB, rows
    assert rows["v1"]["write_iops"] > 0 and rows["v1"]["claim"] == "shop/data"
    assert rows["v2"]["write_bytes_per_second"] < rows["v1"]["write_bytes_per_second"]
    assert sample[0]["volume_id"] == "v1", "busiest first"
    table = flexvol("top", "--once", "--interval", "0.2", root=str(driver.root))
    assert table.exit_code == 0 and table.stdout.split()[:4] == ["VOLUME", "PV", "LOOP", "R/S"]
    names = flexvol("top", "--once", "--interval", "0.2", "-o", "name", root=str(driver.root))
    assert names.exit_code == 0 and set(names.stdout.split()) <= {"v1", "v2"}
    assert Path(target, "data").stat().st_size == 8 * MiB
    driver.ok("unmount", target)
    driver.ok("unmount", driver.dir("quiet"))
