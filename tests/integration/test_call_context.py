"""Concurrent calls in one process (the CSI plugin's thread pool, threads calling the core):
a child started for one call holds only that call's lock descriptors, and each call's journal
line lists only the commands it ran."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flexvol.cli.audit import journaled
from flexvol.core import runner, state
from flexvol.core.config import Config
from flexvol.core.errors import CommandFailed, CommandTimedOut
from flexvol.csi.status import rpc
from tests.helpers.csi import FakeContext
from tests.helpers.driver import Driver

WAIT = 20.0


def make_config(driver: Driver) -> Config:
    config = Config(str(driver.root))
    state.ensure_dirs(config)
    for volume_id in ("a", "b"):
        # A volume that exists: its last holder keeps the lock file (state.VolumeLock).
        Path(config.backing_file(volume_id)).touch()
    return config


def sleep_child() -> int:
    """The pid of the `sleep` this process started through the runner, once it runs."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            comm, _, rest = stat.partition(") ")
            if comm.endswith("(sleep") and int(rest.split()[1]) == os.getpid():
                return int(name)
        time.sleep(0.01)
    raise AssertionError("the sleep started through the runner never appeared")


def open_files(pid: int) -> set[str]:
    files = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            files.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return files


def lock_is_free(path: str) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def in_thread(action: Callable[[], object], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            action()
        except BaseException as error:  # re-raised by the test after join
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def check_child_holds_only_its_own_lock(config: Config, holder: Callable[[Callable[[], None]], object],
                                        worker: Callable[[Callable[[], None]], object]) -> None:
    """`holder` takes volume b's lock and runs a command; meanwhile `worker` takes volume a's
    lock and starts a sleep. The sleep must hold a's lock file open and not b's: once b's call
    is over, b is free although the sleep (an orphan-to-be) still runs."""
    b_holds, b_may_go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold_b() -> None:
        with state.VolumeLock(config, "b", wait=5):
            runner.run(["true"], timeout=WAIT)
            b_holds.set()
            assert b_may_go.wait(WAIT)

    def start_sleep() -> None:
        assert b_holds.wait(WAIT)
        with state.VolumeLock(config, "a", wait=5):
            try:
                runner.run(["sleep", "60"], timeout=WAIT)
            except CommandFailed as error:  # killed below: exit -9
                assert error.code == -signal.SIGKILL, error

    threads = [in_thread(lambda: holder(hold_b), errors), in_thread(lambda: worker(start_sleep), errors)]
    child = 0
    try:
        child = sleep_child()
        files = open_files(child)
        b_may_go.set()
        threads[0].join(WAIT)
        b_free = lock_is_free(config.lock_path("b"))
    finally:
        b_may_go.set()
        if child:
            os.kill(child, signal.SIGKILL)
        for thread in threads:
            thread.join(WAIT)
    assert not errors, errors
    assert config.lock_path("a") in files, "the child of a's call must inherit a's lock"
    assert config.lock_path("b") not in files, f"the child of a's call holds b's lock: {sorted(files)}"
    assert b_free, "b stayed locked by the child of another call after b's call ended"


def plain(action: Callable[[], None]) -> object:
    return action()


def test_defect_a_child_of_one_thread_holds_another_threads_lock_fd(driver: Driver) -> None:
    """Defect: the lock descriptors children inherit were one module-level set: a command one
    thread started under volume a's lock inherited volume b's lock, held by another thread, so
    an orphaned child kept b locked."""
    check_child_holds_only_its_own_lock(make_config(driver), plain, plain)


class Servicer:
    """Two CSI RPCs through the plugin's own per-RPC wrapper (csi/status.py)."""

    @rpc
    def Call(self, request: Callable[[], None], context: object) -> object:
        return request()


def as_csi_rpc(action: Callable[[], None]) -> object:
    return Servicer().Call(action, FakeContext())


def test_defect_two_concurrent_csi_rpcs_share_lock_fds(driver: Driver) -> None:
    """Defect: in `flexvol csi` (grpcio thread pool) a mkfs started by one RPC inherited the
    lock of the volume another RPC held at that moment."""
    check_child_holds_only_its_own_lock(make_config(driver), as_csi_rpc, as_csi_rpc)


def test_defect_a_journal_line_lists_another_calls_commands(driver: Driver) -> None:
    """Defect: the commands a call ran were one module-level list: a toolkit action journaled
    the commands of another action running at the same time in another thread."""
    config = make_config(driver)
    first_ran, second_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with journaled(config, "first", "a"):
            runner.run(["echo", "first-1"], timeout=WAIT)
            first_ran.set()
            assert second_done.wait(WAIT)
            runner.run(["echo", "first-2"], timeout=WAIT)

    def second() -> None:
        assert first_ran.wait(WAIT)
        with journaled(config, "second", "b"):
            runner.run(["echo", "second-1"], timeout=WAIT)
        second_done.set()

    threads = [in_thread(first, errors), in_thread(second, errors)]
    for thread in threads:
        thread.join(WAIT)
    assert not errors, errors
    lines = [json.loads(line) for line in Path(config.journal_path).read_text().splitlines()]
    commands = {line["verb"]: [command["argv"] for command in line["commands"]] for line in lines}
    assert commands == {"toolkit:first": ["echo first-1", "echo first-2"],
                        "toolkit:second": ["echo second-1"]}


def test_a_nested_call_keeps_its_callers_lock(driver: Driver) -> None:
    """A toolkit action inside a call that holds a volume's lock takes it again without
    waiting on itself, and journals only its own commands."""
    config = make_config(driver)
    with runner.call() as outer, state.VolumeLock(config, "a", wait=5):
        runner.run(["echo", "outer"], timeout=WAIT)
        with journaled(config, "inner", "a"), state.VolumeLock(config, "a", wait=0.1):
            runner.run(["echo", "inner"], timeout=WAIT)
        assert not lock_is_free(config.lock_path("a"))
    assert lock_is_free(config.lock_path("a"))
    assert [line for line, _code, _ms in outer.history] == ["echo outer"]
    entry = json.loads(Path(config.journal_path).read_text().splitlines()[-1])
    assert [command["argv"] for command in entry["commands"]] == ["echo inner"]


def test_runner_merges_stderr_passes_env_and_keeps_output_of_a_timed_out_command(driver: Driver) -> None:
    """What the kubelet emulation needs: both streams as one, its own environment, any exit
    code as an answer, and what a killed command printed."""
    done = runner.run(["/bin/sh", "-c", 'echo "out $GREETING"; echo err >&2; exit 3'], timeout=WAIT,
                      ok=None, merge_stderr=True, env={"PATH": "/usr/bin:/bin", "GREETING": "hi"})
    assert (done.code, done.out, done.err) == (3, "out hi\nerr\n", "")
    with pytest.raises(CommandTimedOut) as raised:
        runner.run(["/bin/sh", "-c", "echo started; exec sleep 60"], timeout=0.5, merge_stderr=True)
    assert raised.value.stdout == "started\n"
    with pytest.raises(CommandFailed, match=r"cannot start .*: No such file or directory"):
        runner.run([str(driver.base / "missing")], timeout=WAIT)
