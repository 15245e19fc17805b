"""snapshot create, ls, show, delete, manifest: point-in-time copies of this node's volumes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from flexvol.cli import helpfmt
from flexvol.cli.audit import journaled
from flexvol.cli.common import DEFAULT_ROOT, RootOption, console, friendly_errors, load_config
from flexvol.cli.main import app
from flexvol.cli.output import Column, JsonAliasOption, NoHeadersOption, OutputOption, Row, emit, resolve
from flexvol.cli.volumes import VolumeArgument
from flexvol.core.quantity import human_bytes
from flexvol.toolkit import snapshotting

snapshot_app = helpfmt.Typer(
    name="snapshot", cls=helpfmt.Group, no_args_is_help=True, rich_markup_mode="rich",
    help="Take, list, show and delete snapshots of volumes; 'flexvol create NEW --from-snapshot "
         "NAME' restores one as a new volume.")
app.add_typer(snapshot_app, name="snapshot")


def complete_snapshot(incomplete: str) -> list[str]:
    import os

    config = load_config(os.environ.get("FLEXVOL_ROOT", DEFAULT_ROOT))
    try:
        return [row["name"] for row in snapshotting.listing(config) if row["name"].startswith(incomplete)]
    except OSError:
        return []


def check_name_argument(value: str) -> str:
    from flexvol.core.errors import InvalidInput
    from flexvol.core.snapshots import check_name

    try:
        return check_name(value)
    except InvalidInput as error:
        raise typer.BadParameter(f"{error.message}: {error.hint}") from None


NameArgument = Annotated[str, typer.Argument(help="The snapshot's name (unique on this node).",
                                             metavar="NAME", callback=check_name_argument,
                                             autocompletion=complete_snapshot)]


def _size(key: str) -> Callable[[Row], str]:
    return lambda row: human_bytes(int(row[key])) if row.get(key) is not None else "-"  # type: ignore[call-overload]


def _kind(row: Row) -> str:
    """The snapshot's filesystem, or "raw block" for a raw block volume's."""
    return "raw block" if row.get("block") else str(row.get("fs_type"))


def _source(row: Row) -> str:
    return str(row.get("source_volume")) + ("" if row.get("source_exists") else " (deleted)")


SNAPSHOT_COLUMNS = (
    Column("NAME", "name"),
    Column("VOLUME", _source),
    Column("SIZE", _size("size_bytes"), justify="right"),
    Column("HOLDS", _size("allocated_bytes"), justify="right"),
    Column("FS", lambda row: _kind(row)),
    Column("COPY", "method"),
    Column("CREATED", "created_at"),
    Column("FROZEN", lambda row: "yes" if row.get("frozen") else "no", wide=True),
    Column("FILE", "file", wide=True),
)


@contextmanager
def copy_progress(out: Console, what: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar for a copy on a terminal; a reflink fills it at once."""
    with Progress(TextColumn(what), BarColumn(), DownloadColumn(binary_units=True),
                  TimeRemainingColumn(), console=out, transient=True,
                  disable=not out.is_terminal) as bar:
        task = bar.add_task(what, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield progress


@snapshot_app.command("create")
@friendly_errors
def create(volume_id: VolumeArgument, name: NameArgument, root: RootOption = DEFAULT_ROOT) -> None:
    """Take snapshot NAME of VOLUME, mounted or not.

    A mounted volume's filesystem is frozen
    for the moment of the copy (its pod's writes wait, then go on); the copy is a reflink where
    the data root's filesystem shares blocks (xfs with reflink, btrfs), else a sparse copy of
    the data it holds.

    Example: [bold]flexvol snapshot create data-1 data-1-monday[/]
    """
    config = load_config(root)
    out = console()
    with journaled(config, "snapshot", volume_id, (volume_id, name)) as action:
        with copy_progress(out, "copying") as progress:
            record = snapshotting.take(config, volume_id, name, progress)
        how = "reflink" if record.method == "reflink" else "sparse copy"
        frozen = ", taken frozen" if record.frozen else ""
        action.message = (f"snapshot {name} of {volume_id}: {human_bytes(record.size_bytes)} "
                          f"{_kind(record.to_json())} by {how}{frozen}")
    out.print(action.message)


@snapshot_app.command("ls")
@friendly_errors
def list_snapshots(volume_id: Annotated[str, typer.Argument(
                       help="Only the snapshots of this volume.", metavar="VOLUME")] = "",
                   output: OutputOption = None, no_headers: NoHeadersOption = False,
                   json_output: JsonAliasOption = False, root: RootOption = DEFAULT_ROOT) -> None:
    """List the snapshots: their volume, size, what they hold, how and when they were taken.

    A snapshot still being taken (or left half-made by a killed call) is
    never listed.

    Example: [bold]flexvol snapshot ls[/] or [bold]flexvol snapshot ls data-1 -o json[/]
    """
    output = resolve(output, json_output)
    config = load_config(root, must_exist=True)
    emit(snapshotting.listing(config, volume_id), SNAPSHOT_COLUMNS, output, no_headers, name="name",
         empty="no snapshots")


@snapshot_app.command("show")
@friendly_errors
def show(name: NameArgument,
         json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
         root: RootOption = DEFAULT_ROOT) -> None:
    """Describe one snapshot: its record and what its file holds.

    Example: [bold]flexvol snapshot show data-1-monday[/]
    """
    from flexvol.cli.common import print_json

    config = load_config(root, must_exist=True)
    row = snapshotting.show(config, name)
    if json_output:
        print_json(row)
        return
    out = console()
    for label, value in (("Name", row["name"]), ("Volume", _source(row)),
                         ("Size", human_bytes(int(row["size_bytes"]))),
                         ("Holds", human_bytes(int(row["allocated_bytes"]))),
                         ("Filesystem", f"{row.get('fs_type')} (uuid {row.get('uuid')})"
                          if not row.get("block") else "none: a raw block volume's"),
                         ("Copy", row.get("method")),
                         ("Frozen", "yes" if row.get("frozen") else "no (not mounted)"),
                         ("Created", row.get("created_at")), ("File", row["file"])):
        out.print(f"{label + ':':<12}{value}", markup=False)


@snapshot_app.command("manifest")
@friendly_errors
def manifest(name: NameArgument,
             namespace: Annotated[str, typer.Option("--namespace", "-n",
                                                    help="The VolumeSnapshot's namespace: its claims' own.")],
             snapshot_name: Annotated[str, typer.Option(
                 "--name", help="The VolumeSnapshot's name (default: the snapshot's).")] = "",
             root: RootOption = DEFAULT_ROOT) -> None:
    """Print the VolumeSnapshotContent and VolumeSnapshot that make snapshot NAME a claim's
    data source.

    FlexVolume volumes have no CSI snapshotter: the content is pre-provisioned, its snapshot
    handle is NAME, and 'flexvol provisioner' restores a claim whose dataSource names the
    VolumeSnapshot on this node. Deleting the objects keeps the snapshot (deletionPolicy Retain).

    Example: [bold]flexvol snapshot manifest data-1-monday -n shop | kubectl apply -f -[/]
    """
    import yaml

    from flexvol.provisioning.names import PROVISIONER_NAME
    from flexvol.toolkit import snapshot_objects

    config = load_config(root, must_exist=True)
    docs = snapshot_objects.objects(config, name, namespace, snapshot_name or name, PROVISIONER_NAME)
    typer.echo(yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True), nl=False)


@snapshot_app.command("delete")
@friendly_errors
def delete(name: NameArgument, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
           root: RootOption = DEFAULT_ROOT) -> None:
    """Delete a snapshot. Volumes restored from it are independent files and stay.

    Example: [bold]flexvol snapshot delete data-1-monday --yes[/]
    """
    config = load_config(root)
    if not yes and not typer.confirm(f"delete snapshot {name}?", default=False):
        raise typer.Exit(1)
    with journaled(config, "snapshot-delete", "", (name,)) as action:
        removed = snapshotting.delete(config, name)
        action.message = f"deleted snapshot {name}" + (f" ({', '.join(removed)})" if removed else "")
    console().print(action.message)
