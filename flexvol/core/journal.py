"""The call log: one JSON line per driver call under <data root>/log/calls.jsonl, and one per
action of the toolkit on a volume (verb "toolkit:<action>", with who ran it: cli/audit.py).

It says what the kubelet asked, what we answered, which commands ran and how long it took.
Secret values never appear: only how many secrets a call carried.
"""

from __future__ import annotations

import os
import time

from flexvol.core import wirejson
from flexvol.core.config import Config

MAX_BYTES = 16 << 20


class CallInfo:
    """What one call did, filled in as it runs."""

    __slots__ = ("args", "error_detail", "notes", "secrets", "started", "target", "verb", "volume_id",
                 "who")

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.args: list[str] = []
        self.volume_id = ""
        self.target = ""
        self.secrets = 0
        self.notes: list[str] = []
        self.started = time.monotonic()
        self.error_detail = ""
        self.who = ""  # the toolkit's own actions: the user who ran them


def append(config: Config, call: CallInfo, status: str, message: str,
           commands: list[tuple[str, int, float]]) -> None:
    """Append the call's line; a journal that cannot be written never fails the call."""
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pid": os.getpid(),
        "verb": call.verb,
        "volume": call.volume_id,
        "target": call.target,
        "status": status,
        "message": message,
        "ms": round((time.monotonic() - call.started) * 1000, 1),
        "commands": [{"argv": line, "exit": code, "ms": ms} for line, code, ms in commands],
        "notes": call.notes,
        "secrets": call.secrets,
    }
    if call.error_detail:
        entry["detail"] = call.error_detail
    if call.who:
        entry["who"] = call.who
    line = (wirejson.dumps(entry) + "\n").encode()
    try:
        if not os.path.isdir(config.log_dir):
            return
        fd = os.open(config.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size > MAX_BYTES:
                os.replace(config.journal_path, config.journal_path + ".1")
            # One write with O_APPEND: lines from concurrent calls never interleave.
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        pass


def read_entries(config: Config, limit: int | None = None) -> list[dict]:
    """The journal's entries, oldest first (for the toolkit)."""
    entries: list[dict] = []
    for path in (config.journal_path + ".1", config.journal_path):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        value = wirejson.loads(line)
                    except ValueError:
                        continue
                    if isinstance(value, dict):
                        entries.append(value)
        except OSError:
            continue
    return entries[-limit:] if limit else entries


class Follower:
    """Hands out each journal line once: remembers the file (inode) and offset it read to.
    From the start of the journal (metrics count every call), or with `from_end` only the calls
    journaled after it was made (`flexvol calls --follow`)."""

    def __init__(self, path: str, *, from_end: bool = False) -> None:
        self.path = path
        self.inode: int | None = None
        self.offset = 0
        if from_end:
            try:
                info = os.stat(path)
                self.inode, self.offset = info.st_ino, info.st_size
            except OSError:
                pass

    def new_entries(self) -> list[dict]:
        entries: list[dict] = []
        try:
            current = os.stat(self.path).st_ino
        except OSError:
            current = None
        if self.inode is not None and current != self.inode:
            # Rotated: finish the old file, now calls.jsonl.1, then start the new one.
            try:
                if os.stat(self.path + ".1").st_ino == self.inode:
                    entries += self._read(self.path + ".1")
            except OSError:
                pass
            self.offset = 0
        self.inode = current
        if current is not None:
            entries += self._read(self.path)
        return entries

    def _read(self, path: str) -> list[dict]:
        try:
            with open(path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        # Only complete lines; a line being appended is read at the next scrape.
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        entries = []
        for line in complete.splitlines():
            try:
                value = wirejson.loads(line.decode("utf-8", "replace"))
            except ValueError:
                continue
            if isinstance(value, dict):
                entries.append(value)
        return entries
