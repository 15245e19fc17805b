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
