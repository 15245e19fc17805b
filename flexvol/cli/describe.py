"""`flexvol show` as `kubectl describe` reads: the volume's facts, then what happened to it as
events with ages (its recent calls, the toolkit's actions on it, and its problems now)."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from flexvol.core.quantity import human_bytes
from flexvol.core.records import Record
from flexvol.toolkit.inventory import VolumeView, readable_bytes

NORMAL, WARNING = "Normal", "Warning"
TOOLKIT = "toolkit:"


@dataclass
class Event:
    type: str
    reason: str
    at: float | None  # seconds since the epoch; None when unknown
    message: str

    def as_dict(self, now: float) -> dict:
        return {"type": self.type, "reason": self.reason, "age": age(self.at, now), "message": self.message}


def parse_time(text: str) -> float | None:
    """The journal's and records' UTC times (2026-12-06T11:04:09Z) as epoch seconds."""
    try:
        return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))
    except (TypeError, ValueError):
        return None


def age(at: float | None, now: float) -> str:
    """How long ago, as kubectl prints it: 45s, 12m, 3h5m, 2d."""
    if at is None:
        return "<unknown>"
    seconds = max(0, int(now - at))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 24:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest and hours < 10 else f"{hours}h"
    return f"{hours // 24}d"


def call_event(entry: dict) -> Event:
    """One journal line as an event: Mount / FailedMount, Resize (the toolkit's, with who)."""
    verb = str(entry.get("verb") or "call")
    name = verb[len(TOOLKIT):] if verb.startswith(TOOLKIT) else verb
    word = name[:1].upper() + name[1:]
    ok = entry.get("status") == "Success"
    message = str(entry.get("message") or (f"{name} succeeded" if ok else f"{name} failed"))
    notes = [str(note) for note in entry.get("notes") or []]
    if notes:
        message += f" ({'; '.join(notes)})"
    if entry.get("target"):
        message += f" at {entry['target']}"
    if entry.get("who"):
        message += f" (by {entry['who']})"
    return Event(NORMAL if ok else WARNING, word if ok else f"Failed{word}",
                 parse_time(str(entry.get("time"))), message)


def volume_events(item: VolumeView, calls: list[dict]) -> list[Event]:
    """Its calls oldest first, then what is wrong with it now."""
    events = [call_event(entry) for entry in calls]
    if item.growing:
        growing = item.growing
        why = f": {growing['error']}" if growing.get("error") else ""
        events.append(Event(WARNING, "FilesystemNotGrown", parse_time(str(growing.get("since"))),
                            f"the file grew to {readable_bytes(growing.get('to'))} but the filesystem did "
                            f"not{why}; the next resize or mount (offline) finishes it"))
    events.extend(Event(WARNING, "Problem", None, problem) for problem in item.problems)
    return events


def facts(item: VolumeView, busy: list[tuple[int, str, str]],
          snapshots: list[dict] | None = None) -> list[tuple[str, str]]:
    record = item.record or Record(item.volume_id, 0, "", "")
    formatted = record.formatted or {}
    rows = [
        ("Name", item.volume_id),
        ("State", item.state + (f", fs growing to {readable_bytes((item.growing or {}).get('to'))}"
                                if item.growing else "")),
        ("Size", readable_bytes(item.size_bytes) + (
            f" (filesystem still {readable_bytes(record.size_bytes)})" if item.growing else "")),
        ("Allocated", readable_bytes(item.allocated_bytes)),
        ("Used", readable_bytes(item.fs_used_bytes) if item.fs_used_bytes is not None else "- (not mounted)"),
        ("Filesystem", (f"{item.fs_type} (UUID {formatted.get('uuid') or '?'})" if item.formatted
                        else f"{item.fs_type or '-'} (not formatted yet)")),
        ("Allocation", str(record.allocation or "-")),
        ("Front end", ", ".join(item.front_ends) or "-"),
        ("Backing file", item.file_path + ("" if item.file_exists else " (missing)")),
        ("Loop devices", ", ".join(item.loop_devices) or "-"),
        ("PV", ", ".join(item.pvs) or "-"),
        ("Claim", item.claim or "-"),
        ("Namespace", str(record.namespace or "-")),
        ("Created", str(record.created_at or "-") + (
            f" by {record.created_by}" if record.created_by else "")),
    ]
    if item.growing:
        rows.append(("Growing", f"to {human_bytes(int(item.growing.get('to') or 0))} since "
                                f"{item.growing.get('since') or '?'}"))
    mounts = [f"{m.path}{' (ro)' if m.read_only else ''}{f'  pod {m.pod}' if m.pod else ''}"
              for m in item.mounts]
    rows.append(("Mounts", "\n".join(mounts) or "<none>"))
    if busy:
        rows.append(("Used by", "\n".join(f"pid {pid} ({name}): {path}" for pid, name, path in busy)))
    if snapshots is not None:
        rows.append(("Snapshots", snapshot_lines(snapshots)))
    return rows


def snapshot_lines(snapshots: list[dict]) -> str:
    """One line per ready snapshot of the volume, with what its file holds, then the total."""
    if not snapshots:
        return "<none>"
    lines = [f"{row['name']}  holds {readable_bytes(row['allocated_bytes'])} of "
             f"{readable_bytes(row['size_bytes'])}, {row.get('method')}, {row.get('created_at')}"
             for row in snapshots]
    if len(snapshots) > 1:
        lines.append(f"{len(snapshots)} snapshots hold "
                     f"{readable_bytes(sum(int(row['allocated_bytes']) for row in snapshots))}")
    return "\n".join(lines)


def describe(item: VolumeView, calls: list[dict], busy: list[tuple[int, str, str]],
             now: float | None = None, snapshots: list[dict] | None = None) -> Group:
    """The whole `show` text: facts, then `Events:` with TYPE REASON AGE MESSAGE."""
    now = time.time() if now is None else now
    head = Table(box=None, pad_edge=False, show_header=False)
    head.add_column(no_wrap=True, style="bold")
    head.add_column(overflow="fold")
    for key, value in facts(item, busy, snapshots):
        head.add_row(f"{key}:", Text(value))
    events = volume_events(item, calls)
    if not events:
        return Group(head, Text("Events:  <none>"))
    table = Table(box=None, pad_edge=False)
    for name in ("TYPE", "REASON", "AGE", "MESSAGE"):
        table.add_column(name, no_wrap=name != "MESSAGE", overflow="fold")
    for event in events:
        table.add_row(Text(event.type, style="" if event.type == NORMAL else "yellow"), event.reason,
                      age(event.at, now), Text(event.message))
    return Group(head, Text("Events:"), table)


def print_describe(out: Console, item: VolumeView, calls: list[dict],
                   busy: list[tuple[int, str, str]], snapshots: list[dict] | None = None) -> None:
    out.print(describe(item, calls, busy, snapshots=snapshots))
