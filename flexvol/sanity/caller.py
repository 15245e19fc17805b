"""Exec a driver the way the kubelet does and judge each answer against the wire contract.

docs/flexvolume.md section 2: no shell, argv = [exe, verb, args...], stdin /dev/null, a minimal
environment, stdout and stderr read as one stream (Go's CombinedOutput), exactly one JSON
object. Unlike the kubelet, every call has a timeout, and a timed-out call's whole process
group is killed, so a child that holds the pipe cannot hang the checker. The driver is started
through flexvol's one runner (core/runner.py), in the checker's working directory: posix_spawn
cannot change a child's, where the kubelet's is usually /.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flexvol.core import runner
from flexvol.core.errors import CommandFailed, CommandTimedOut

MINIMAL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
STATUSES = ("Success", "Failure", "Not supported")
SUCCESS = "Success"
FAILURE = "Failure"
NOT_SUPPORTED = "Not supported"


@dataclass
class Call:
    """One exec of the driver and what came back."""

    verb: str
    argv: list[str]
    code: int | None
    output: str
    seconds: float
    timed_out: bool = False
    reply: dict | None = None
    # The first way the answer breaks the wire contract, or "" if it keeps it.
    problem: str = ""
    # Answered by the caller without exec, as the kubelet does for a cached "Not supported".
    cached: bool = False

    @property
    def status(self) -> str:
        return str(self.reply.get("status", "")) if self.reply else ""

    @property
    def message(self) -> str:
        return str(self.reply.get("message", "")) if self.reply else ""

    @property
    def ok(self) -> bool:
        """Success as the kubelet sees it: a well-formed Success reply with exit 0."""
        return not self.problem and self.status == SUCCESS

    @property
    def not_supported(self) -> bool:
        return not self.problem and self.status == NOT_SUPPORTED

    def field(self, name: str) -> object:
        return self.reply.get(name) if self.reply else None

    def describe(self) -> str:
        """What went wrong with this call, for a person."""
        if self.problem:
            return self.problem
        if self.status != SUCCESS:
            text = f"{self.verb} answered {self.status!r}"
            return text + (f": {self.message}" if self.message else "")
        return f"{self.verb} succeeded"


def judge(verb: str, code: int | None, output: str, timed_out: bool) -> tuple[dict | None, str]:
    """Parse the combined output; return the reply and the first contract violation (section 2)."""
    if timed_out:
        return None, f"{verb} did not finish in time (a hung call, or a child keeping stdout open)"
    try:
        reply = json.loads(output)
    except ValueError as error:
        shown = output.strip()[:300] or "(nothing)"
        return None, f"{verb} output is not exactly one JSON object ({error.msg}): {shown}"
    if not isinstance(reply, dict):
        return None, f"{verb} output is JSON but not an object: {output.strip()[:200]}"
    status = reply.get("status")
    if status not in STATUSES:
        return reply, f"{verb} status {status!r} is not one of {', '.join(STATUSES)}"
    if status == SUCCESS and code != 0:
        return reply, f"{verb} answered Success with exit code {code} (the kubelet treats it as a failure)"
    if status == FAILURE and not str(reply.get("message", "")).strip():
        return reply, f"{verb} answered Failure without a message"
    if "capabilities" in reply:
        capabilities = reply["capabilities"]
        if not isinstance(capabilities, dict):
            return reply, f"{verb} capabilities is {json.dumps(capabilities)}, not an object"
        for key, value in capabilities.items():
            if not isinstance(value, bool):
                return reply, f"{verb} capability {key} is {json.dumps(value)}, not a JSON boolean"
    if "attached" in reply and not isinstance(reply["attached"], bool):
        return reply, f"{verb} attached is {json.dumps(reply['attached'])}, not a JSON boolean"
    return reply, ""


@dataclass
class Caller:
    """Runs one driver. `calls` keeps every call made, for latency figures and reports."""

    executable: str
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    calls: list[Call] = field(default_factory=list)
    # Called with the verb just before each exec (drives a live view).
    on_call: Callable[[str], None] | None = None
    # Called with each finished call (drives a timeline).
    on_done: Callable[[Call], None] | None = None
    # Verbs whose call timed out: not exec'd again (the kubelet would be stuck on them).
    hung: set[str] = field(default_factory=set)

    def environment(self) -> dict[str, str]:
        return {"PATH": MINIMAL_PATH, **self.env}

    def call(self, verb: str, *args: str, timeout: float | None = None) -> Call:
        argv = [self.executable, verb, *args]
        if verb in self.hung:
            done = Call(verb, argv, None, "", 0.0, timed_out=True)
            done.problem = f"{verb} is not called again: it hung earlier in this run"
            self.calls.append(done)
            return done
        if self.on_call:
            self.on_call(verb)
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        code, output, timed_out = exec_driver(argv, self.environment(), limit)
        done = Call(verb, argv, code, output, time.monotonic() - started, timed_out)
        done.reply, done.problem = judge(verb, code, output, timed_out)
        if timed_out:
            self.hung.add(verb)
        self.calls.append(done)
        if self.on_done:
            self.on_done(done)
        return done


def exec_driver(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, str, bool]:
    """Exec argv as the kubelet does; return (exit code or None, combined output, timed out).

    A timed-out call's process group is killed and its output so far kept; a child that left
    the group and still holds the pipe is not waited for.
    """
    try:
        done = runner.run(argv, timeout=timeout, ok=None, merge_stderr=True, env=env)
    except CommandTimedOut as error:
        return None, error.stdout, True
    except CommandFailed as error:  # could not be started
        reason = error.message.rpartition(": ")[2]
        return None, f"cannot execute {argv[0]}: {reason}", False
    return done.code, done.out, False


class KubeletCache:
    """The kubelet's memory of "Not supported" per verb, for the life of one plugin object."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self.unsupported: set[str] = set()

    def call(self, verb: str, *args: str) -> Call:
        if verb in self.unsupported:
            done = Call(verb, [self.caller.executable, verb, *args], 0, "", 0.0, cached=True)
            done.reply = {"status": NOT_SUPPORTED}
            return done
        done = self.caller.call(verb, *args)
        if done.not_supported:
            self.unsupported.add(verb)
        return done
