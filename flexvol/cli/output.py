"""One way for every listing to print: `-o json|yaml|wide|name`, `--no-headers`, and a table
that is rich on a terminal and plain, never wrapped nor cut, anywhere else (a pipe, a file).

A listing describes its columns once and hands its rows (the same dicts `-o json` prints) to
`emit`:

    COLUMNS = (Column("VOLUME", "volume_id"), Column("SIZE", lambda row: ..., justify="right"),
               Column("FILE", "file", wide=True))
    emit(rows, COLUMNS, output, no_headers, name="volume_id", empty="no volumes")
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text


class Output(enum.StrEnum):
    JSON = "json"
    YAML = "yaml"
    WIDE = "wide"
    NAME = "name"


OutputOption = Annotated[Output | None, typer.Option(
    "--output", "-o", metavar="FORMAT", case_sensitive=False,
    help="json, yaml, wide (more columns) or name (one id per line). Default: a table.")]
NoHeadersOption = Annotated[bool, typer.Option(
    "--no-headers", help="Print the table without its header line.")]
JsonAliasOption = Annotated[bool, typer.Option("--json", help="The same as -o json.")]

Cell = str | Sequence[str] | None
Row = Mapping[str, object]
# Columns are separated like kubectl's: three spaces, so single spaces inside a cell stay readable.
GAP = "   "


@dataclass(frozen=True)
class Column:
    """One column: its header, how to read its cell from a row (a key, or a function giving a
    string or a list of strings: one line each on a terminal, joined by commas elsewhere)."""

    header: str
    value: str | Callable[[Row], Cell]
    justify: str = "left"
    wide: bool = False  # only with -o wide
    fold: bool = False  # may wrap on a terminal (long free text); never off a terminal
    style: Callable[[Row], str] | None = None  # rich style, terminal only

    def cell(self, row: Row) -> list[str]:
        found = self.value(row) if callable(self.value) else row.get(self.value)
        if found is None or found == "":
            return ["-"]
        if isinstance(found, str):
            return [found]
        if isinstance(found, Sequence):
            return [str(item) for item in found] or ["-"]
        return [str(found)]


def resolve(output: Output | None, json_flag: bool = False) -> Output | None:
    """`--json` is `-o json`; asking for both json and something else is wrong usage."""
    if json_flag and output not in (None, Output.JSON):
        raise typer.BadParameter(f"--json and -o {output.value} ask for different outputs",
                                 param_hint="'--output'")
    return Output.JSON if json_flag else output


def emit(rows: Sequence[Row], columns: Sequence[Column], output: Output | None = None,
         no_headers: bool = False, *, name: str | Callable[[Row], str] = "", empty: str = "",
         data: object = None, show_header: bool = True, out: Console | None = None) -> None:
    """Print `rows` as asked. json and yaml print `data` when given (a listing whose machine
    form is not a list of its rows, e.g. `calls --stats`), else the rows. `empty` is said, on a
    table with headers only, when there are no rows."""
    if output in (Output.JSON, Output.YAML):
        body = list(rows) if data is None else data
        if output == Output.JSON:
            typer.echo(json.dumps(body, indent=2))
        else:
            typer.echo(to_yaml(body), nl=False)
        return
    if output == Output.NAME:
        for row in rows:
            value = name(row) if callable(name) else row.get(name, "")
            if value:
                typer.echo(value)
        return
    if out is None:
        from flexvol.cli.common import console

        out = console()
    if not rows:
        if empty and not no_headers:
            out.print(empty)
        return
    shown = [column for column in columns if output == Output.WIDE or not column.wide]
    header = show_header and not no_headers
    if out.is_terminal:
        out.print(rich_table(rows, shown, header))
    else:
        for line in plain_lines(rows, shown, header):
            typer.echo(line)


def rich_table(rows: Sequence[Row], columns: Sequence[Column], header: bool = True) -> Table:
    table = Table(box=None, pad_edge=False, show_header=header)
    cells = [[column.cell(row) for column in columns] for row in rows]
    for index, column in enumerate(columns):
        # A narrow terminal folds the long free-text columns (paths, messages) and keeps the
        # others whole: never a header squeezed to `MOUNT` or `S`, nor a state cut short.
        whole = max([len(column.header), *(len(line) for row in cells for line in row[index])])
        table.add_column(column.header, justify=column.justify,  # type: ignore[arg-type]
                         no_wrap=not column.fold, overflow="fold",
                         min_width=len(column.header) if column.fold else whole)
    for row, texts in zip(rows, cells, strict=True):
        table.add_row(*(Text("\n".join(lines), style=column.style(row) if column.style else "")
                        for column, lines in zip(columns, texts, strict=True)))
    return table


def plain_lines(rows: Sequence[Row], columns: Sequence[Column], header: bool = True) -> list[str]:
    """Aligned columns without colour, one line per row, as long as it needs to be."""
    table = [[",".join(column.cell(row)).replace("\n", " ") for column in columns] for row in rows]
    if header:
        table.insert(0, [column.header for column in columns])
    widths = [max(len(line[index]) for line in table) for index in range(len(columns))]
    lines = []
    for line in table:
        cells = [cell.rjust(width) if column.justify == "right" else cell.ljust(width)
                 for cell, width, column in zip(line, widths, columns, strict=True)]
        lines.append(GAP.join(cells).rstrip())
    return lines


# ---- yaml ----------------------------------------------------------------------------------

def to_yaml(value: object) -> str:
    """Block-style YAML of plain data (dicts, lists, strings, numbers, booleans, None), keys in
    their own order, as `kubectl -o yaml` prints."""
    import yaml

    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True,
                          width=1 << 20)
