"""The reliability suite's driver harness: raw calls that never assert, the invariants every
scenario checks afterwards, and the figures the report is written from.

Unlike tests/helpers/driver.Driver.call, `Harness.raw` records a reply that is not one JSON
object instead of failing at once, so a scenario can count such replies for the report.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.driver import DRIVER, Driver

VALID_STATUSES = ("Success", "Failure", "Not supported")
# Quick sample in CI; the whole thing with FLEXVOL_RELIABILITY=full (make reliability).
FULL = os.environ.get("FLEXVOL_RELIABILITY", "") == "full"


def scale(quick: int, full: int) -> int:
    return full if FULL else quick


# ---- figures for the report ------------------------------------------------------------------

class Figures:
    """Counters per scenario, written to results/ at the end of the session (conftest.py)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, dict[str, object]] = {}

    def add(self, scenario: str, key: str, amount: int = 1) -> None:
        with self._lock:
            section = self.values.setdefault(scenario, {})
            section[key] = int(section.get(key, 0)) + amount  # type: ignore[arg-type]

    def put(self, scenario: str, key: str, value: object) -> None:
        with self._lock:
            self.values.setdefault(scenario, {})[key] = value


FIGURES = Figures()


# ---- calls -------------------------------------------------------------------------------------

@dataclass
class Outcome:
    argv: list[str]
    code: int
    output: str
    reply: dict | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return (self.reply or {}).get("status", "")

    @property
    def message(self) -> str:
        return (self.reply or {}).get("message", "")

    @property
    def killed(self) -> bool:
        return self.code == -9


def judge(argv: list[str], code: int, output: str) -> Outcome:
    """Check one call against docs/flexvolume.md section 2: one JSON object, a valid status, its exit code."""
    outcome = Outcome(argv, code, output)
    if "Traceback" in output:
        outcome.problems.append("traceback in output")
    try:
        reply = json.loads(output)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        outcome.problems.append("not one JSON object")
        return outcome
    outcome.reply = reply
    status = reply.get("status")
    if status not in VALID_STATUSES:
        outcome.problems.append(f"invalid status {status!r}")
    elif status == "Failure" and (code == 0 or not reply.get("message")):
        outcome.problems.append("Failure without non-zero exit or message")
    elif status != "Failure" and code != 0:
        outcome.problems.append(f"{status} with exit {code}")
    return outcome


class Harness(Driver):
    """A Driver whose calls return an Outcome instead of asserting.

    FLEXVOL_RELIABILITY_DRIVER runs the suite against another build of the driver (an older
    checkout's bin/flexvol-loop), to see a regression test fail where the defect is present.
    """

    def __init__(self, base: Path, attach: bool = False) -> None:
        executable = Path(os.environ.get("FLEXVOL_RELIABILITY_DRIVER") or DRIVER)
        super().__init__(base, executable, attach=attach)

    def raw(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Outcome:
        argv = [str(self.executable), *args]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env={**self.env(), **(env or {})},
                              timeout=timeout, check=False)
        output = done.stdout.decode(errors="replace")
        if done.returncode == -9:
            # Killed by the fault hook: no reply is expected, but a partial one must not exist.
            outcome = Outcome(argv, -9, output)
            if output:
                checked = judge(argv, 0, output)
                outcome.reply = checked.reply
                outcome.problems = [p for p in checked.problems if "exit" not in p]
            return outcome
        return judge(argv, done.returncode, output)

    def must(self, *args: str, status: str = "Success", env: dict[str, str] | None = None) -> Outcome:
        outcome = self.raw(*args, env=env)
        assert not outcome.problems, (outcome.problems, outcome.output)
        assert outcome.status == status, outcome.output
        return outcome

    def record_or_none(self, volume_id: str) -> dict | None:
        path = self.root / "records" / f"{volume_id}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def uuid(self, volume_id: str) -> str | None:
        record = self.record_or_none(volume_id)
        return (record or {}).get("formatted", {}) and record["formatted"].get("uuid")


# ---- invariants --------------------------------------------------------------------------------

def leaks(harness: Driver, *, allowed_mounts: int = 0) -> list[str]:
    """Loop devices, mounts, temp files and held locks of this harness's data root."""
    found = []
    mounts = harness.mounts()
    if len(mounts) > allowed_mounts:
        found.append(f"mounts: {[m.mount_point for m in mounts]}")
    if not allowed_mounts and settled_loops(harness):
        found.append(f"loop devices: {harness.loops()}")
    if harness.root.exists():
        for path in harness.root.rglob("*"):
            if path.name.endswith(".tmp"):
                found.append(f"temp file {path}")
        for lock in (harness.root / "locks").glob("*.lock"):
            if lock_is_held(lock):
                found.append(f"lock held: {lock}")
    return found


def settled_loops(harness: Driver, wait: float = 5.0) -> list[str]:
    """The harness's loop devices once deferred detaches are done.

    `losetup --detach` of a device something else still has open (udev probing it after the
    umount) only marks it for autoclear; the kernel unbinds it at that opener's last close.
    """
    import time

    deadline = time.monotonic() + wait
    while harness.loops() and time.monotonic() < deadline:
        time.sleep(0.1)
    return harness.loops()


def lock_is_held(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def journal_tracebacks(harness: Driver) -> list[str]:
    """Journal lines that carry an internal error's traceback."""
    path = harness.root / "log" / "calls.jsonl"
    if not path.exists():
        return []
    bad = []
    for line in path.read_text(errors="replace").splitlines():
        if "Traceback" in line or '"detail"' in line or "internal error" in line:
            bad.append(line[:300])
    return bad


def is_immutable(path: str | Path) -> bool:
    done = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True, check=False)
    return done.returncode == 0 and "i" in done.stdout.split()[0]


def mounts_at(harness: Driver, target: str) -> list:
    return [mount for mount in harness.mounts() if mount.mount_point == target]


def write_probe(directory: str) -> bool:
    """Try to create a file in `directory` as root would; True if the write went through."""
    path = os.path.join(directory, ".write-probe")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return False
    os.close(fd)
    os.unlink(path)
    return True
