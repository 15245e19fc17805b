"""calls and call: how the driver has been answering, and asking it something directly."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape

from flexvol.cli import render
from flexvol.cli.common import (
    DEFAULT_ROOT,
    EXIT_FAILED,
    JsonOption,
    RootOption,
    console,
    friendly_errors,
    load_config,
    print_json,
)
from flexvol.cli.main import app
from flexvol.cli.output import JsonAliasOption, NoHeadersOption, OutputOption, emit, resolve
from flexvol.core import journal
from flexvol.core.errors import InvalidInput
from flexvol.toolkit.callrun import DEFAULT_PLUGIN_DIR, call_driver, installed_driver

SECRET_MARK = "kubernetes.io/secret/"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return 0.0
    rank = max(1, -(-int(fraction * 1000) * len(values) // 1000))
    return values[min(rank, len(values)) - 1]


def verb_stats(entries: list[dict]) -> dict[str, dict]:
    by_verb: dict[str, list[dict]] = {}
    for entry in entries:
        by_verb.setdefault(entry.get("verb", "?"), []).append(entry)
    stats = {}
    for verb, rows in by_verb.items():
        times = sorted(float(row.get("ms", 0)) for row in rows)
        stats[verb] = {"calls": len(rows), "failed": sum(row.get("status") == "Failure" for row in rows),
                       "p50": percentile(times, 0.5), "p90": percentile(times, 0.9),
                       "p99": percentile(times, 0.99), "max": times[-1]}
    return stats


def redact(entry: dict) -> dict:
    """The journal holds secret counts only; hide anything that still looks like a secret."""
    text = json.dumps(entry)
    if SECRET_MARK not in text:
        return entry
    message = entry.get("message", "")
    return {**entry, "message": message.split(SECRET_MARK)[0] + SECRET_MARK + "<redacted>"}


def complete_verb(incomplete: str) -> list[str]:
    """Shell completion of a verb: the driver's verbs, then the toolkit's journaled actions."""
    from flexvol.cli.audit import PREFIX
    from flexvol.flex.verbs import VERBS

    actions = [PREFIX + action for action in ("create", "delete", "resize", "repair", "share", "fsck")]
    return [verb for verb in (*VERBS, *actions) if verb.startswith(incomplete)]


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """10m, 90s, 2h, 1d or 1h30m as seconds; InvalidInput with an example otherwise."""
    rest, total = text.strip(), 0.0
    if not rest:
        raise InvalidInput("--since needs a duration", "use e.g. --since 10m (s, m, h or d)")
    while rest:
        digits = len(rest) - len(rest.lstrip("0123456789."))
        number, unit = rest[:digits], rest[digits:digits + 1]
        if not number or unit not in DURATION_UNITS:
            raise InvalidInput(f"--since {text!r} is not a duration", "use e.g. --since 10m (s, m, h or d)")
        try:
            total += float(number) * DURATION_UNITS[unit]
        except ValueError:
            raise InvalidInput(f"--since {text!r} is not a duration",
                               "use e.g. --since 10m (s, m, h or d)") from None
        rest = rest[digits + 1:]
    return total


def newer_than(entries: list[dict], seconds: float, now: float) -> list[dict]:
    from flexvol.cli.describe import parse_time

    cutoff = now - seconds
    return [entry for entry in entries if (parse_time(str(entry.get("time"))) or 0) >= cutoff]


@app.command()
@friendly_errors
def calls(last: Annotated[int, typer.Option("--last", "-n", help="How many calls.")] = 20,
          verb: Annotated[str, typer.Option(help="Only this verb.", autocompletion=complete_verb)] = "",
          volume: Annotated[str, typer.Option(help="Only this volume id.")] = "",
          stats: Annotated[bool, typer.Option("--stats", help="Latency percentiles per verb.")] = False,
          since: Annotated[str, typer.Option(help="Only calls of the last DURATION: 30s, 10m, 2h, 1d.",
                                             metavar="DURATION")] = "",
          follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new calls as they are "
                                               "journaled, until Ctrl-C.")] = False,
          follow_for: Annotated[float, typer.Option(hidden=True, help="Stop following after this many "
                                                    "seconds (0: never).")] = 0,
          output: OutputOption = None, no_headers: NoHeadersOption = False,
          json_output: JsonAliasOption = False, root: RootOption = DEFAULT_ROOT) -> None:
    """The driver's recent calls from its journal (secrets are never in it, only counts).

    -o name prints the volume of each call (with --stats: each verb).

    Example: [bold]flexvol calls --verb mount --last 5[/], [bold]flexvol calls --since 10m --follow[/]
    or [bold]flexvol calls --stats[/]
    """
    import time

    output = resolve(output, json_output)
    config = load_config(root, must_exist=True)
    window = parse_duration(since) if since else None

    def wanted(entry: dict) -> bool:
        return (not verb or entry.get("verb") == verb) and (not volume or entry.get("volume") == volume)

    follower = journal.Follower(config.journal_path, from_end=True) if follow else None
    entries = [redact(entry) for entry in journal.read_entries(config) if wanted(entry)]
    if window is not None:
        entries = newer_than(entries, window, time.time())
    if stats:
        table = verb_stats(entries)
        emit(render.stat_rows(table), render.STAT_COLUMNS, output, no_headers, name="verb", data=table,
             empty="no calls")
        return
    if window is None or last != 20:
        entries = entries[-last:] if last > 0 else entries
    if follow and output == "json":
        for entry in entries:
            typer.echo(json.dumps(entry))  # one JSON line a call: a stream
    elif entries or not follow:
        emit(entries, render.CALL_COLUMNS, output, no_headers, name="volume", empty="no calls")
    if follower is not None:
        follow_journal(follower, wanted, output, bool(entries) or no_headers, follow_for)


FOLLOW_POLL = 0.25


def follow_journal(tail: journal.Follower, wanted: Callable[[dict], bool], output: str | None,
                   headed: bool, follow_for: float) -> None:
    """Print each new call as a row (or a JSON line) as it lands, until Ctrl-C; the header only
    once (`headed`: already printed or not wanted)."""
    import time

    deadline = time.monotonic() + follow_for if follow_for > 0 else None
    try:
        while deadline is None or time.monotonic() < deadline:
            batch = [redact(entry) for entry in tail.new_entries() if wanted(entry)]
            if batch and output == "json":
                for entry in batch:
                    typer.echo(json.dumps(entry))
            elif batch:
                emit(batch, render.CALL_COLUMNS, output, headed, name="volume")
                headed = True
            time.sleep(FOLLOW_POLL)
    except KeyboardInterrupt:
        return


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@friendly_errors
def call(verb: Annotated[str, typer.Argument(help="init, mount, unmount, expandfs ...",
                                             autocompletion=complete_verb)],
         args: Annotated[list[str] | None, typer.Argument(help="The verb's arguments.")] = None,
         driver: Annotated[str, typer.Option(help="The driver executable.")] = "",
         plugin_dir: Annotated[str, typer.Option(help="The kubelet's plugin dir.")] = DEFAULT_PLUGIN_DIR,
         root: Annotated[str, typer.Option(
             "--root", envvar="FLEXVOL_ROOT", show_envvar=True,
             help="The data root the driver acts on (default: the one installed into it).")] = "",
         json_output: JsonOption = False) -> None:
    """Run a verb of the installed driver as the kubelet would; show the reply readable and raw.

    Example: [bold]flexvol call init[/] or
    [bold]flexvol call mount /mnt/x '{"volumeID":"data-1","size":"1Gi"}'[/]
    """
    executable = driver or installed_driver(plugin_dir)
    # The kubelet's environment is bare; the data root is the one thing passed on, when named.
    env = {"FLEXVOL_ROOT": os.path.abspath(root)} if root else None
    result = call_driver(executable, [verb, *(args or [])], env=env)
    if result.code == -1 and result.problem.startswith("cannot run"):
        raise InvalidInput(result.problem, "install the driver (install.sh) or pass --driver")
    if json_output:
        print_json({"argv": result.argv, "exit_code": result.code, "raw": result.output,
                    "reply": result.reply, "problem": result.problem})
    else:
        out = console()
        status = result.reply.get("status", "no reply")
        out.print(f"[bold]{escape(status)}[/] (exit code {result.code})")
        for key, value in result.reply.items():
            if key != "status":
                out.print(f"  {key}: {escape(json.dumps(value) if not isinstance(value, str) else value)}")
        if result.problem:
            out.print(f"[bold red]problem:[/] {escape(result.problem)}")
        out.print("raw:")
        out.print(escape(result.output.rstrip("\n")), soft_wrap=True)
    if result.problem or result.reply.get("status") == "Failure":
        raise typer.Exit(EXIT_FAILED)
