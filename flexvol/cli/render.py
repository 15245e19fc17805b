"""Rich output of the toolkit's listings: tables built from the library's dataclasses (sanity and
simulate runs are render_runs.py)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from flexvol.cli.output import Column, Row, rich_table
from flexvol.core.budget import LOW_FRACTION
from flexvol.core.quantity import human_bytes
from flexvol.toolkit.doctor import FAIL, PASS, Check
from flexvol.toolkit.inventory import Capacity, VolumeView
from flexvol.toolkit.repair import Finding
from flexvol.toolkit.volumeio import VolumeRates

STATE_STYLE = {"idle": "dim", "attached": "cyan", "mounted": "green", "inconsistent": "bold red"}
CHECK_STYLE = {PASS: "green", FAIL: "bold red"}


def size(value: int | None) -> str:
    return "-" if value is None else human_bytes(value)


def direct_io(value: bool | None) -> str:
    return "" if value is None else (" dio" if value else " buffered")


# ---- flexvol ls ----------------------------------------------------------------------------

def _fs(row: Row) -> str:
    fs_type = str(row.get("fs_type") or "")
    return fs_type + ("" if row.get("formatted") or not fs_type else " (blank)")


def _loop(row: Row) -> list[str]:
    """One device a line on a terminal; the I/O mode after the last (they share the file)."""
    devices = list(row.get("loop_devices") or [])  # type: ignore[call-overload]
    if devices:
        devices[-1] += direct_io(row.get("direct_io"))  # type: ignore[arg-type]
    return devices


def _mounts(row: Row) -> list[str]:
    shown = []
    for mount in row.get("mounts") or []:  # type: ignore[attr-defined]
        text = mount["path"] + (" ro" if mount["read_only"] else "")
        shown.append(text + (f" [{mount['pod']}]" if mount["pod"] else ""))
    return shown


def _pv_claim(row: Row) -> str:
    """The PV(s) using the volume and, when the agent provisioned it, its claim: pv (ns/name)."""
    pvs = ", ".join(row.get("pvs") or [])  # type: ignore[arg-type]
    if row.get("claim"):
        return f"{pvs or '?'} ({row['claim']})"
    return pvs or "-"  # a cell of its own, also for `awk '{print $N}'`


def _snapshots(row: Row) -> str:
    """How many snapshots the volume has and what their files hold: `2 (40.0MiB)`."""
    count = int(row.get("snapshots") or 0)  # type: ignore[call-overload]
    return f"{count} ({size(row.get('snapshot_bytes'))})" if count else "-"  # type: ignore[arg-type]


def _state(row: Row) -> str:
    """The state word, and "fs growing to X" while a grown volume's filesystem lags behind."""
    growing = row.get("growing") or {}
    text = str(row["state"])
    if growing:
        text += f", fs growing to {size(growing.get('to'))}"  # type: ignore[union-attr]
    return text


VOLUME_COLUMNS = (
    Column("VOLUME", "volume_id"),
    Column("SIZE", lambda row: size(row["size_bytes"]), justify="right"),  # type: ignore[arg-type]
    Column("ALLOCATED", lambda row: size(row["allocated_bytes"]), justify="right"),  # type: ignore[arg-type]
    Column("USED", lambda row: size(row["fs_used_bytes"]), justify="right"),  # type: ignore[arg-type]
    Column("FS", _fs),
    Column("LOOP", _loop),
    Column("MOUNTS", _mounts, fold=True),
    Column("PV", lambda row: _pv_claim(row), fold=True),
    Column("SNAPSHOTS", lambda row: _snapshots(row), justify="right"),
    Column("STATE", lambda row: _state(row), style=lambda row: STATE_STYLE.get(str(row["state"]), "")),
    Column("VIA", "front_ends", wide=True),  # the front end(s) it is used through
    Column("FILE", "file", wide=True),
    Column("PROBLEMS", "problems", wide=True, fold=True),
)


def volume_columns(rows: list[dict]) -> tuple[Column, ...]:
    """The ls columns; SNAPSHOTS only when some volume has one (a narrow terminal keeps its room)."""
    if any(row.get("snapshots") for row in rows):
        return VOLUME_COLUMNS
    return tuple(column for column in VOLUME_COLUMNS if column.header != "SNAPSHOTS")


def volumes_table(views: list[VolumeView]) -> Table:
    rows = [item.as_dict() for item in views]
    return rich_table(rows, [c for c in volume_columns(rows) if not c.wide])


# ---- flexvol repair --------------------------------------------------------------------------

def finding_rows(found: list[Finding], results: dict[int, str] | None = None) -> list[dict]:
    """Each finding as a dict, with the result of --apply when there is one."""
    return [{**item.as_dict(), **({"result": results[index]} if results and index in results else {})}
            for index, item in enumerate(found)]


def finding_columns(applied: bool) -> tuple[Column, ...]:
    def last(row: Row) -> str:
        if applied and row.get("result"):
            return str(row["result"])
        return str(row.get("action") or "none: needs a person")

    return (Column("FINDING", "kind"), Column("VOLUME", "volume_id"),
            Column("SUBJECT", "subject", wide=True), Column("DETAIL", "detail", fold=True),
            Column("RESULT" if applied else "ACTION (--apply)", last, fold=True))


def pv_claim(item: VolumeView) -> str:
    """The PV(s) using the volume and, when the agent provisioned it, its claim: pv (ns/name)."""
    pvs = ", ".join(item.pvs)
    if item.claim:
        return f"{pvs or '?'} ({item.claim})"
    return pvs or "-"


def state_text(item: VolumeView) -> Text:
    """The state word, and "fs growing to X" while a grown volume's filesystem lags behind."""
    text = Text(item.state, style=STATE_STYLE.get(item.state, ""))
    if item.growing:
        text.append(f", fs growing to {size(item.growing.get('to'))}", style="bold yellow")
    return text


def print_unwrapped(out: Console, renderable: Table) -> None:
    """Off a terminal, a row stays on one line however wide (scripts split lines, not cells)."""
    if out.is_terminal:
        out.print(renderable)
        return
    from rich.measure import Measurement

    needed = Measurement.get(out, out.options.update(width=1 << 16), renderable).maximum
    if needed > out.width:
        out = Console(width=needed, highlight=False, soft_wrap=False, no_color=out.no_color,
                      file=out.file)
    out.print(renderable)


def findings_table(found: list[Finding], results: dict[int, str] | None = None) -> Table:
    return rich_table(finding_rows(found, results),
                      [c for c in finding_columns(results is not None) if not c.wide])


# ---- flexvol doctor --------------------------------------------------------------------------

CHECK_COLUMNS = (
    Column("STATUS", "status", style=lambda row: CHECK_STYLE.get(str(row["status"]), "yellow")),
    Column("CHECK", "name"),
    Column("DETAIL", "detail", fold=True),
    Column("FIX", "fix", fold=True),
)


def checks_table(checks: list[Check]) -> Table:
    return rich_table([check.as_dict() for check in checks], CHECK_COLUMNS)


# ---- flexvol calls ---------------------------------------------------------------------------

def _message(entry: Row) -> str:
    return str(entry.get("message", "")) + (f" (by {entry['who']})" if entry.get("who") else "")


CALL_COLUMNS = (
    Column("TIME", "time"),
    Column("VERB", "verb"),
    Column("VOLUME", "volume"),
    Column("STATUS", "status", style=lambda row: "green" if row.get("status") == "Success" else "bold red"),
    Column("MS", lambda row: f"{row.get('ms', 0):g}", justify="right"),
    Column("PID", "pid", wide=True, justify="right"),
    Column("TARGET", "target", wide=True),
    Column("MESSAGE", _message, fold=True),
)


def calls_table(entries: list[dict]) -> Table:
    return rich_table(entries, [c for c in CALL_COLUMNS if not c.wide])


STAT_COLUMNS = (
    Column("VERB", "verb"),
    Column("CALLS", "calls", justify="right"),
    Column("FAILED", "failed", justify="right"),
    *(Column(f"{key.upper()} MS", lambda row, key=key: f"{row[key]:g}", justify="right")  # type: ignore[misc]
      for key in ("p50", "p90", "p99", "max")),
)


def stat_rows(stats: dict[str, dict]) -> list[dict]:
    return [{"verb": verb, **row} for verb, row in sorted(stats.items())]


def stats_table(stats: dict[str, dict]) -> Table:
    return rich_table(stat_rows(stats), STAT_COLUMNS)


# ---- flexvol capacity ------------------------------------------------------------------------

CAPACITY_COLUMNS = (
    Column("FIELD", "field"),
    Column("VALUE", "value", fold=True, style=lambda row: "bold red" if row.get("alert") else ""),
)


def capacity_rows(found: Capacity) -> list[dict]:
    rows = [
        ("pool", found.path, False),
        ("pool size", human_bytes(found.total_bytes), False),
        ("pool free (really)", human_bytes(found.free_bytes), False),
        ("committed (sum of volume sizes)", human_bytes(found.committed_bytes), False),
        ("allocated (blocks in use)", human_bytes(found.allocated_bytes), False),
        ("promised, not yet written (thin)", human_bytes(found.promised_bytes), False),
        *([("snapshots hold (reflinked share promised)",
            f"{human_bytes(found.snapshot_bytes)} ({human_bytes(found.shared_bytes)})", False)]
          if found.snapshot_bytes else []),
        ("budget (sum of sizes)", f"{human_bytes(found.budget_bytes)} ({found.ratio:g}x pool size)", False),
        ("available to new or grown volumes", human_bytes(found.available_bytes), found.low),
    ]
    if found.unbacked_bytes:
        rows.append(("unbacked", f"thin volumes were promised {human_bytes(found.unbacked_bytes)} more "
                                 "than the pool has free: their writes will fail once it is full", True))
    elif found.low:
        rows.append(("low", f"under {LOW_FRACTION:.0%} of the pool is free", True))
    return [{"field": field, "value": value, "alert": alert} for field, value, alert in rows]


def capacity_table(found: Capacity) -> Table:
    return rich_table(capacity_rows(found), CAPACITY_COLUMNS, header=False)


# ---- flexvol top -------------------------------------------------------------------------

def per_second(value: float) -> str:
    return f"{size(int(value))}/s" if value >= 1 else "0"


def top_table(rows: list[VolumeRates], interval: float) -> Table:
    """Live I/O per volume over one interval, busiest first."""
    table = Table(box=None, pad_edge=False, caption=f"over {interval:g}s", caption_justify="left")
    for name in ("VOLUME", "PV/CLAIM", "LOOP", "R/S", "W/S", "READ", "WRITE", "R LAT", "W LAT",
                 "INFLIGHT", "BUSY", "QUEUE"):
        left = name in ("VOLUME", "PV/CLAIM", "LOOP")
        table.add_column(name, no_wrap=True, justify="left" if left else "right")
    for row in rows:
        rate, io = row.rates, row.io
        who = f"{io.pv or '?'} ({io.claim})" if io.claim else (io.pv or "-")
        table.add_row(io.volume_id, who, ", ".join(io.devices),
                      f"{rate.read_iops:.0f}", f"{rate.write_iops:.0f}",
                      per_second(rate.read_bytes_per_s), per_second(rate.write_bytes_per_s),
                      f"{rate.read_latency_ms:.1f}ms", f"{rate.write_latency_ms:.1f}ms", str(rate.in_flight),
                      f"{rate.busy:.0%}", f"{rate.queue_depth:.2f}")
    return table


def top_rows_as_dicts(rows: list[VolumeRates], interval: float) -> list[dict]:
    return [{"volume_id": row.io.volume_id, "pv": row.io.pv, "claim": row.io.claim,
             "loop_devices": row.io.devices,
             "interval_seconds": interval, "read_iops": round(row.rates.read_iops, 2),
             "write_iops": round(row.rates.write_iops, 2),
             "read_bytes_per_second": round(row.rates.read_bytes_per_s),
             "write_bytes_per_second": round(row.rates.write_bytes_per_s),
             "read_latency_ms": round(row.rates.read_latency_ms, 3),
             "write_latency_ms": round(row.rates.write_latency_ms, 3),
             "in_flight": row.rates.in_flight, "busy": round(row.rates.busy, 4),
             "queue_depth": round(row.rates.queue_depth, 3)} for row in rows]
