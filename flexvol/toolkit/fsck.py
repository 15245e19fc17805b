"""Check the filesystem of an idle volume offline (`flexvol fsck`), and with `repair` fix it.

Toolkit only: the driver never imports this module (nor `sh`, which runs the checker here so
that its progress can be streamed to a person; docs/design.md section 10).

Under the volume's lock, and only while nothing mounts or attaches the volume, the volume's
file gets a loop device with the driver's own step (`loop.ensure_loop`, recorded before the
bind, so a killed fsck leaves a device the driver reuses and `flexvol repair` frees), the
checker runs on it, and the device is detached again by the same undo that a failed mount
uses: "detached" is said only once sysfs shows it gone. The checker inherits the lock's
descriptor, so a checker outliving a killed `flexvol fsck` still keeps the driver away.

A check opens the filesystem read-only (`e2fsck -n`, `xfs_repair -n`, `btrfs check
--readonly`). A repair checks first, repairs only when the check found errors, and checks
again: "repaired" is said only when that last check is clean.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flexvol.core import kernel, loop, runner, state
from flexvol.core.config import Config
from flexvol.core.errors import CommandFailed, Refused
from flexvol.core.options import check_volume_id
from flexvol.core.undo import Undo
from flexvol.toolkit import lifecycle

# A person watches and can interrupt; the bound only ends a checker stuck on hung I/O.
FSCK_TIMEOUT = 6 * 3600
LOCK_WAIT = 10

CLEAN = "clean"
ERRORS = "errors found"
REPAIRED = "repaired"
ERRORS_LEFT = "errors left"
FAILED = "check failed"

Lines = Callable[[str], None]
Fraction = Callable[[float], None]


@dataclass
class Run:
    """One run of the checker: its command line, exit code and what its exit code means."""

    argv: list[str]
    code: int
    outcome: str  # CLEAN, ERRORS, REPAIRED (the repair changed something) or FAILED
    output: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"argv": runner.shell_line(self.argv), "exit_code": self.code, "outcome": self.outcome}


@dataclass
class Result:
    volume_id: str
    fs_type: str
    device: str
    verdict: str
    runs: list[Run]
    detached: bool
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The exit code of the run that decided the verdict."""
        return self.runs[-1].code if self.runs else -1

    def as_dict(self) -> dict[str, object]:
        return {"volume_id": self.volume_id, "fs_type": self.fs_type, "device": self.device,
                "verdict": self.verdict, "exit_code": self.exit_code, "detached": self.detached,
                "runs": [item.as_dict() for item in self.runs], "notes": self.notes}


# ---- the checkers ---------------------------------------------------------------------------

E2FSCK_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")
LINE_END = re.compile(r"\r\n|\n|\r")
XFS_PHASE = re.compile(r"^Phase (\d+) ")
BTRFS_STEP = re.compile(r"^\[(\d+)/(\d+)\] ")


def _e2fsck_outcome(code: int) -> str:
    # e2fsck(8): 1 errors corrected, 2 corrected (reboot), 4 left uncorrected, 8 operational
    # error, 16 usage, 32 cancelled, 128 library error; bits add up.
    if code < 0 or code & (16 | 32 | 128):
        return FAILED
    # 4 wins over 8: e2fsck found errors, even if they also stopped it (a corrupt journal: 12).
    if code & 4:
        return ERRORS
    if code & 8:
        return FAILED
    if code & 3:
        return REPAIRED
    return CLEAN


def _xfs_outcome(code: int) -> str:
    # xfs_repair(8): with -n, 1 means corruption found; 2 a log that must be replayed first.
    return {0: CLEAN, 1: ERRORS}.get(code, FAILED)


def _btrfs_outcome(code: int) -> str:
    # btrfs check exits 1 for errors found (and for a filesystem it cannot open, whose output
    # then says so; the tool's own lines are shown either way).
    return {0: CLEAN, 1: ERRORS}.get(code, FAILED)


def _xfs_progress(line: str) -> float | None:
    found = XFS_PHASE.match(line)
    return int(found.group(1)) / 7 if found else None


def _btrfs_progress(line: str) -> float | None:
    found = BTRFS_STEP.match(line)
    return int(found.group(1)) / int(found.group(2)) if found else None


@dataclass(frozen=True)
class Checker:
    tool: str
    check: tuple[str, ...]
    # None: this filesystem is not repaired by flexvol (why: `no_repair`).
    repair: tuple[str, ...] | None
    outcome: Callable[[int], str]
    # A fraction from one line of output, for the checkers that announce their phases.
    progress: Callable[[str], float | None] = lambda line: None
    no_repair: str = ""
    hint: str = ""


# e2fsck -C 0 draws its own progress bar between \x01 and \x02 (e2fsck/unix.c), with the
# overall percentage across its five passes: parsed from those segments (see Stream).
EXT = Checker(
    "e2fsck",
    check=("e2fsck", "-f", "-n", "-C", "0"),
    # -p (preen) fixes what is safe to fix without a person and stops, exit 4, at anything
    # that could lose data; -y would answer yes to every question, clearing inodes included.
    # That choice is left to a person, with a backup (the hint).
    repair=("e2fsck", "-f", "-p", "-C", "0"),
    outcome=_e2fsck_outcome,
    hint="back up the backing file (cp --sparse=always {file} {file}.bak), then run "
         "e2fsck -f -y on it by hand while the volume stays idle",
)

CHECKERS: dict[str, Checker] = {
    "ext4": EXT,
    "ext3": EXT,
    "xfs": Checker(
        "xfs_repair",
        check=("xfs_repair", "-n"),
        repair=("xfs_repair",),
        outcome=_xfs_outcome,
        progress=_xfs_progress,
        hint="exit 2 means the log must be replayed first: mount the volume once (a pod, or "
             "'flexvol repair'), then check again; never zero the log (-L) while it holds data",
    ),
    "btrfs": Checker(
        "btrfs",
        check=("btrfs", "check", "--readonly"),
        repair=None,
        outcome=_btrfs_outcome,
        progress=_btrfs_progress,
        no_repair="btrfs-progs itself warns that 'btrfs check --repair' may make damage worse",
        hint="mount the volume and run 'btrfs scrub start -B' on it, or restore from a backup; "
             "run 'btrfs check --repair' by hand only on a copy",
    ),
}


class Stream:
    """Splits a checker's output, fed in chunks of any size, into whole lines and progress.

    Lines end at "\\n" or "\\r"; e2fsck's progress segments (between \\x01 and \\x02) become
    fractions and never lines.
    """

    def __init__(self, on_line: Lines, on_fraction: Fraction,
                 progress: Callable[[str], float | None]) -> None:
        self.on_line = on_line
        self.on_fraction = on_fraction
        self.progress = progress
        self.pending = ""
        self.lines: list[str] = []

    def feed(self, chunk: str) -> None:
        self.pending += chunk
        while True:
            start = self.pending.find("\x01")
            end = self.pending.find("\x02", start) if start >= 0 else -1
            if end < 0:
                break
            percents = E2FSCK_PERCENT.findall(self.pending[start + 1:end])
            if percents:
                self.on_fraction(min(float(percents[-1]) / 100, 1.0))
            self.pending = self.pending[:start] + self.pending[end + 1:]
        # Text before a segment still open is complete up to its last line end.
        opened = self.pending.find("\x01")
        text, rest = (self.pending, "") if opened < 0 else (self.pending[:opened], self.pending[opened:])
        parts = LINE_END.split(text)
        self.pending = parts.pop() + rest
        for part in parts:
            self._line(part)

    def close(self) -> None:
        leftover, self.pending = self.pending.replace("\x01", "").replace("\x02", ""), ""
        for part in LINE_END.split(leftover):
            self._line(part)

    def _line(self, line: str) -> None:
        line = line.rstrip()
        if not line.strip():
            return
        self.lines.append(line)
        fraction = self.progress(line.strip())
        if fraction is not None:
            self.on_fraction(fraction)
        self.on_line(line)


# ---- running a checker through sh -----------------------------------------------------------

def run_checker(argv: list[str], *, on_line: Lines, on_fraction: Fraction,
                progress: Callable[[str], float | None], keep_fds: tuple[int, ...] = (),
                timeout: float = FSCK_TIMEOUT) -> tuple[int, list[str]]:
    """Run a checker to its end, streaming its output; its exit code and output lines.

    `keep_fds` (the volume lock) are inherited by the checker under their own numbers.
    """
    import sh

    executable = runner.which(argv[0])
    if executable is None:
        raise CommandFailed(f"{argv[0]} is not installed (looked in {runner.ENVIRONMENT['PATH']})",
                            f"install the package that provides {argv[0]}", argv=argv)
    out = Stream(on_line, on_fraction, progress)
    err = Stream(on_line, on_fraction, progress)
    for fd in keep_fds:
        os.set_inheritable(fd, True)
    started = time.monotonic()
    devnull = open(os.devnull, "rb")  # noqa: SIM115 - closed in finally, after the checker ends
    try:
        # sh, not core/runner.py: the runner returns output at the end, a checker streams progress.
        process = sh.Command(executable)(
            *argv[1:], _out=out.feed, _err=err.feed, _out_bufsize=0, _err_bufsize=0,
            _tty_out=False, _in=devnull, _env=dict(runner.ENVIRONMENT), _bg=True,
            _bg_exc=False, _pass_fds=set(keep_fds), _timeout=timeout, _decode_errors="replace",
            # Every exit code is an answer to judge, not an exception.
            _ok_code=list(range(-64, 256)))
        try:
            process.wait()
        except BaseException:
            # Interrupted (Ctrl-C): end the checker before its loop device is detached.
            if process.is_alive():
                process.terminate()
            try:
                process.wait()
            except Exception:
                pass
            raise
        code = process.exit_code
    except sh.TimeoutException:
        raise CommandFailed(f"{argv[0]} did not finish within {timeout:g}s and was killed: "
                            f"{runner.shell_line(argv)}", "check the node for hung I/O on the data root",
                            argv=argv) from None
    finally:
        devnull.close()
        for fd in keep_fds:
            os.set_inheritable(fd, False)
    out.close()
    err.close()
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    runner.current().history.append((runner.shell_line(argv), code, elapsed_ms))
    return code, out.lines + err.lines


# ---- the operation --------------------------------------------------------------------------

def _idle_record(config: Config, volume_id: str) -> state.Record:
    """The record of a volume that exists and that nothing mounts or attaches, or Refused."""
    path = config.backing_file(volume_id)
    record = state.load_record(config, volume_id)
    if record is None and not os.path.exists(path):
        raise Refused(f"volume {volume_id} does not exist", "see 'flexvol ls'")
    if record is None:
        raise Refused(f"volume {volume_id} has a backing file but no record",
                      "run 'flexvol repair --apply' to adopt it first")
    if not os.path.exists(path):
        raise Refused(f"the backing file of volume {volume_id} ({path}) is missing",
                      "see 'flexvol repair'")
    reasons = lifecycle.in_use(config, volume_id)
    if reasons:
        leaked = all(reason.startswith("attached as ") for reason in reasons)
        raise Refused(f"volume {volume_id} is in use: {'; '.join(reasons)}; its filesystem is "
                      "checked only while nothing mounts or attaches it",
                      "'flexvol repair --apply' frees a loop device nothing mounts" if leaked else
                      "stop the pods that use it (the kubelet then unmounts it) and try again")
    return record


def _fs_type(record: state.Record, device: str) -> str:
    formatted = record.formatted_fs
    if formatted:
        return formatted
    found = kernel.probe(device)
    if found.blank:
        raise Refused(f"volume {record.volume_id} holds no filesystem yet; nothing to check")
    return found.fs_type


def fsck(config: Config, volume_id: str, *, repair: bool = False, on_line: Lines = lambda line: None,
         on_fraction: Fraction = lambda fraction: None,
         on_start: Callable[[str, list[str]], None] = lambda device, argv: None) -> Result:
    """Check (and with `repair`, repair) the filesystem of an idle volume; the verdict.

    `on_start(device, argv)` is told each checker run before it starts; `on_line` gets the
    checker's output lines and `on_fraction` its progress (0 to 1) as they come.
    """
    check_volume_id(volume_id)
    with state.VolumeLock(config, volume_id, wait=LOCK_WAIT) as lock:
        record = _idle_record(config, volume_id)
        undo = Undo()
        runs: list[Run] = []
        device = ""
        fs_type = ""
        notes: list[str] = []
        try:
            device = loop.ensure_loop(config, record, undo)
            fs_type = _fs_type(record, device)
            checker = CHECKERS.get(fs_type)
            if checker is None:
                raise Refused(f"volume {volume_id} holds {fs_type}, which flexvol cannot check",
                              f"it checks {', '.join(sorted(CHECKERS))}")
            if repair and checker.repair is None:
                raise Refused(f"flexvol does not repair {fs_type}: {checker.no_repair}", checker.hint)

            def once(argv: tuple[str, ...]) -> Run:
                full = [*argv, device]
                on_start(device, full)
                code, output = run_checker(full, on_line=on_line, on_fraction=on_fraction,
                                           progress=checker.progress, keep_fds=(lock.fd,))
                done = Run(full, code, checker.outcome(code), output)
                runs.append(done)
                return done

            first = once(checker.check)
            verdict = first.outcome
            if repair and verdict == ERRORS and checker.repair is not None:
                fixed = once(checker.repair)
                again = once(checker.check) if fixed.outcome != FAILED else fixed
                verdict = REPAIRED if again.outcome == CLEAN else (
                    FAILED if again.outcome == FAILED else ERRORS_LEFT)
            elif verdict == REPAIRED:  # a read-only check cannot have changed anything
                verdict = ERRORS
        finally:
            undo.rollback()
        detached = not undo.errors
        notes.extend(f"not detached: {item}" for item in undo.errors)
        if verdict == ERRORS and checker.repair is not None:
            notes.append(f"'flexvol fsck {volume_id} --repair' fixes what is safe to fix without a person")
        elif verdict in (ERRORS, ERRORS_LEFT, FAILED) and checker.hint:
            notes.append(checker.hint.format(file=config.backing_file(volume_id)))
        return Result(volume_id, fs_type, device, verdict, runs, detached, notes)


def describe(result: Result) -> str:
    """One line for a person: the verdict, the exit code of each run and the device's fate."""
    tool = result.runs[-1].argv[0] if result.runs else "checker"
    codes = ", ".join(str(item.code) for item in result.runs) or "none"
    device = f"{result.device} detached" if result.detached else f"{result.device} NOT detached"
    return f"{result.volume_id} ({result.fs_type}): {result.verdict} ({tool} exit {codes}); {device}"
