"""calls and call: how the driver has been answering, and asking it something directly."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from flexvol import journal
from flexvol.callrun import DEFAULT_PLUGIN_DIR, call_driver, installed_driver
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
from flexvol.errors import InvalidInput

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


@app.command()
@friendly_errors
def calls(last: Annotated[int, typer.Option("--last", "-n", help="How many calls.")] = 20,
          verb: Annotated[str, typer.Option(help="Only this verb.")] = "",
          volume: Annotated[str, typer.Option(help="Only this volume id.")] = "",
          stats: Annotated[bool, typer.Option("--stats", help="Latency percentiles per verb.")] = False,
          output: OutputOption = None, no_headers: NoHeadersOption = False,
          json_output: JsonAliasOption = False, root: RootOption = DEFAULT_ROOT) -> None:
    """The driver's recent calls from its journal (secrets are never in it, only counts).

    -o name prints the volume of each call (with --stats: each verb).

    Example: [bold]flexvol calls --verb mount --last 5[/] or [bold]flexvol calls --stats[/]
    """
    output = resolve(output, json_output)
    entries = [redact(entry) for entry in journal.read_entries(load_config(root))
               if (not verb or entry.get("verb") == verb) and (not volume or entry.get("volume") == volume)]
    if stats:
        table = verb_stats(entries)
        emit(render.stat_rows(table), render.STAT_COLUMNS, output, no_headers, name="verb", data=table,
             empty="no calls")
        return
    entries = entries[-last:] if last > 0 else entries
    emit(entries, render.CALL_COLUMNS, output, no_headers, name="volume", empty="no calls")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@friendly_errors
def call(verb: Annotated[str, typer.Argument(help="init, mount, unmount, expandfs ...")],
         args: Annotated[list[str] | None, typer.Argument(help="The verb's arguments.")] = None,
         driver: Annotated[str, typer.Option(help="The driver executable.")] = "",
         plugin_dir: Annotated[str, typer.Option(help="The kubelet's plugin dir.")] = DEFAULT_PLUGIN_DIR,
         json_output: JsonOption = False) -> None:
    """Run a verb of the installed driver as the kubelet would; show the reply readable and raw.

    Example: [bold]flexvol call init[/] or
    [bold]flexvol call mount /mnt/x '{"volumeID":"data-1","size":"1Gi"}'[/]
    """
    executable = driver or installed_driver(plugin_dir)
    result = call_driver(executable, [verb, *(args or [])])
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
