"""Repair beside the kubelet: `flexvol repair --apply` runs while the kubelet tears a pod down
(the driver's unmount, then rmdir of the pod dir), on a pod dir whose mount was lost behind the
driver's back. Whatever the interleaving, nothing may be left: no mount, no loop device, no pod
dir made again, no mount record (the race of repair and the kubelet's unmount).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

from flexvol.core.config import Config
from flexvol.toolkit import repair
from tests.helpers.cli import flexvol
from tests.helpers.driver import options
from tests.reliability.harness import FIGURES, Harness, journal_tracebacks, leaks, scale, settled_loops

SCENARIO = "repair beside the kubelet's unmount"


def teardown_like_the_kubelet(harness: Harness, pod: Path, delay: float, errors: list[str]) -> None:
    """The kubelet's TearDown: the driver's unmount, then rmdir of the volume dir and (the pod
    is gone) of the pod's dirs."""
    time.sleep(delay)
    outcome = harness.raw("unmount", str(pod / "volumes" / "flexvol~loop" / "data"))
    if outcome.status != "Success" or outcome.problems:
        errors.append(f"unmount: {outcome.output[:300]}")
        return
    for path in (pod / "volumes" / "flexvol~loop" / "data", pod / "volumes" / "flexvol~loop",
                 pod / "volumes", pod):
        try:
            os.rmdir(path)
        except OSError as error:
            errors.append(f"rmdir {path}: {error.strerror}")
            return


def orphans_of(harness: Harness, pod: Path) -> list[str]:
    found = [f"mount {mount.mount_point}" for mount in harness.mounts()]
    found += [f"loop device {device}" for device in settled_loops(harness)]
    if pod.exists():
        found.append(f"pod dir {pod} made again")
    targets = harness.root / "targets"
    found += [f"mount record {name}" for name in os.listdir(targets) if name.endswith(".json")]
    return found


def test_repair_beside_the_kubelets_unmount_leaves_no_orphans(harness: Harness,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    tries = scale(40, 200)
    rng = random.Random(7)
    kubelet_root = harness.base / "kubelet"
    spec = options("race", size="40Mi")
    harness.must("mount", harness.dir("seed"), spec)  # made and formatted once
    harness.must("unmount", harness.dir("seed"))
    orphans: list[str] = []
    teardown_errors: list[str] = []
    bad_repairs: list[str] = []
    results: dict[str, int] = {}
    turn: dict = {}
    real_findings = repair.findings

    def findings_then_the_kubelet(config: Config, root: str) -> list[repair.Finding]:
        found = real_findings(config, root)
        turn["kubelet"].start()
        time.sleep(turn["pause"])
        return found

    monkeypatch.setattr(repair, "findings", findings_then_the_kubelet)
    started = time.monotonic()
    for index in range(tries):
        pod = kubelet_root / "pods" / f"uid-{index}"
        target = str(pod / "volumes" / "flexvol~loop" / "data")
        harness.must("mount", target, spec)
        # the mount is lost behind the driver's back; its loop device stays attached
        subprocess.run(["umount", target], check=True)
        errors: list[str] = []
        kubelet = threading.Thread(target=teardown_like_the_kubelet, args=(harness, pod, 0, errors))
        # The kubelet's teardown starts the moment repair has made its findings; repair acts
        # on them after a pause that lands anywhere in that teardown (or after it).
        turn.update(kubelet=kubelet, pause=rng.uniform(0, 0.12))
        result = flexvol("repair", "--apply", "--json", root=str(harness.root),
                         kubelet_root=str(kubelet_root))
        if not kubelet.is_alive() and kubelet.ident is None:
            kubelet.start()
        kubelet.join()
        if result.exit_code not in (0, 3) or "Traceback" in result.output:
            bad_repairs.append(result.output[:500])
        else:
            found = json.loads(result.stdout)
            if not found:
                results["nothing found"] = results.get("nothing found", 0) + 1
            for item in found:
                result_text = item.get("result", "needs a person")
                word = result_text.split(":", 1)[0]
                if word == "done":  # done: mounted / detached / nothing (to do)
                    word += ": " + result_text.split(": ", 1)[1].split(" ", 1)[0]
                key = f"{item['kind']}: {word}"
                results[key] = results.get(key, 0) + 1
        teardown_errors += errors
        left = orphans_of(harness, pod)
        if left:
            orphans.append(f"try {index}: {left}")
            harness.cleanup()  # start the next try clean
            subprocess.run(["rm", "-rf", str(pod)], check=False)
            for name in os.listdir(harness.root / "targets"):
                os.unlink(harness.root / "targets" / name)
    seconds = time.monotonic() - started
    FIGURES.put(SCENARIO, "tries", tries)
    FIGURES.put(SCENARIO, "seconds", round(seconds, 1))
    FIGURES.put(SCENARIO, "orphans (mount, loop device, pod dir or record left)", len(orphans))
    outcomes = ", ".join(f"{key} x{count}" for key, count in sorted(results.items()))
    FIGURES.put(SCENARIO, "repair outcomes", outcomes)
    assert not orphans, orphans[:5]
    assert not teardown_errors, teardown_errors[:5]
    assert not bad_repairs, bad_repairs[:3]
    assert not leaks(harness)
    assert not journal_tracebacks(harness)
