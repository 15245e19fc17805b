"""ls, show, create, delete, resize, capacity: the volumes of this node."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from flexvol.cli import render
from flexvol.cli.audit import journaled
from flexvol.cli.common import (
    DEFAULT_KUBELET,
    DEFAULT_ROOT,
    JsonOption,
    KubeletRootOption,
    RootOption,
    console,
    friendly_errors,
    load_config,
    print_json,
)
from flexvol.cli.main import app
from flexvol.cli.output import JsonAliasOption, NoHeadersOption, OutputOption, emit, resolve
from flexvol.core import journal
from flexvol.core.quantity import human_bytes, parse_quantity
from flexvol.toolkit import inventory, lifecycle


def complete_volume(incomplete: str) -> list[str]:
    """Shell completion: the volume ids under FLEXVOL_ROOT (or the default data root)."""
    config = load_config(os.environ.get("FLEXVOL_ROOT", DEFAULT_ROOT))
    try:
        ids = set(inventory.record_ids(config)) | set(inventory.file_ids(config))
    except OSError:
        return []  # a root this user cannot read: nothing to offer, and no traceback in the shell
    return sorted(volume_id for volume_id in ids if volume_id.startswith(incomplete))


def complete_fs(incomplete: str) -> list[str]:
    """Shell completion of --fs: the filesystems the driver formats."""
    from flexvol.core.filesystems import FILESYSTEMS

    return [name for name in FILESYSTEMS if name.startswith(incomplete)]


def check_volume_argument(value: str) -> str:
    """The VOLUME argument in the toolkit's words (the driver's speak of flexVolume.options)."""
    from flexvol.core.errors import InvalidInput
    from flexvol.core.options import check_volume_id

    if value == "":
        raise typer.BadParameter("it is empty: give the volume's id, e.g. data-1")
    try:
        return check_volume_id(value)
    except InvalidInput:
        raise typer.BadParameter(
            f"{value[:80]!r} is not a volume id: use 1 to 63 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit") from None


def check_size(value: str, what: str) -> int:
    """A size given on the command line, in bytes; refused when empty, malformed or zero (an
    empty --size must not quietly mean the driver's 1Gi default)."""
    from flexvol.core.errors import InvalidInput

    size = parse_quantity(value, what)
    if size <= 0:
        raise InvalidInput(f"{what} must be more than zero, got {value!r}", "use e.g. 1Gi")
    return size


VolumeArgument = Annotated[str, typer.Argument(help="The volume id (the PV's volumeID option).",
                                               metavar="VOLUME", callback=check_volume_argument,
                                               autocompletion=complete_volume)]


@app.command("ls")
@friendly_errors
def list_volumes(output: OutputOption = None, no_headers: NoHeadersOption = False,
                 json_output: JsonAliasOption = False, root: RootOption = DEFAULT_ROOT,
                 kubelet_root: KubeletRootOption = DEFAULT_KUBELET,
                 watch: Annotated[bool, typer.Option(
                     "--watch", "-w", help="Keep watching: redraw on a terminal; off a terminal print "
                                           "the table again only when it changes. Ctrl-C stops.")] = False,
                 interval: Annotated[float, typer.Option(help="Seconds between looks with --watch.")] = 2.0,
                 watch_for: Annotated[float, typer.Option(hidden=True, help="Stop watching after this "
                                                          "many seconds (0: never).")] = 0) -> None:
    """List every volume: size, allocated bytes, filesystem, loop device, mounts and pods, the PV
    and claim using it, state.

    Example: [bold]flexvol ls[/], [bold]flexvol ls --watch[/], [bold]flexvol ls -o name[/] or
    [bold]flexvol ls -o json | jq '.[].state'[/]
    """
    output = resolve(output, json_output)
    config = load_config(root, must_exist=True)
    if watch:
        from flexvol.cli.watch import watch_volumes

        watch_volumes(config, kubelet_root, interval, watch_for, output == "json")
        return
    rows = [item.as_dict() for item in inventory.volumes(config, kubelet_root)]
    emit(rows, render.volume_columns(rows), output, no_headers, name="volume_id", empty="no volumes")


@app.command()
@friendly_errors
def show(volume_id: VolumeArgument, json_output: JsonOption = False, root: RootOption = DEFAULT_ROOT,
         kubelet_root: KubeletRootOption = DEFAULT_KUBELET,
         last: Annotated[int, typer.Option(help="How many recent calls to show as events.")] = 10) -> None:
    """Describe one volume as kubectl describe does: its facts (size, filesystem, loop device,
    PV, claim, mounts and pods), then its recent calls and problems as events with ages.

    Example: [bold]flexvol show data-1[/]
    """
    config = load_config(root, must_exist=True)
    item = inventory.view(config, volume_id, kubelet_root=kubelet_root)
    if item.record is None and not item.file_exists and not item.loop_devices:
        from flexvol.core.errors import Refused

        raise Refused(f"volume {volume_id} does not exist", "see 'flexvol ls'")
    calls = [entry for entry in journal.read_entries(config) if entry.get("volume") == volume_id][-last:]
    busy = inventory.holders([mount.path for mount in item.mounts]) if item.mounts else []
    from flexvol.toolkit import snapshotting

    snapshots = snapshotting.listing(config, volume_id)
    if json_output:
        import time

        from flexvol.cli.describe import volume_events

        now = time.time()
        record = item.record.to_json() if item.record else None
        print_json({**item.as_dict(), "record": record, "calls": calls,
                    "events": [event.as_dict(now) for event in volume_events(item, calls)],
                    "processes": [{"pid": pid, "name": name, "path": path} for pid, name, path in busy],
                    "snapshots": snapshots})
        return
    from flexvol.cli.describe import print_describe

    print_describe(console(), item, calls, busy, snapshots)


@app.command()
@friendly_errors
def create(volume_id: VolumeArgument,
           size: Annotated[str, typer.Option(
               "--size", "-s", help="A Kubernetes quantity: 512Mi, 10Gi. Required, except with "
                                    "--from-snapshot or --from-volume (default: the source's size).")] = "",
           fs: Annotated[str, typer.Option("--fs", help="ext4, ext3, xfs or btrfs.",
                                           autocompletion=complete_fs)] = "ext4",
           thin: Annotated[bool, typer.Option(
               "--thin", help="A thin volume: a sparse file that takes blocks as it is written "
                              "(fails with I/O errors if other data fills the pool first).")] = False,
           thick: Annotated[bool, typer.Option(
               "--thick", "--preallocate",
               help="A thick volume, the default: every block reserved now, so its writes never "
                    "meet a full pool.")] = False,
           from_snapshot: Annotated[str, typer.Option(
               "--from-snapshot", metavar="NAME",
               help="Restore snapshot NAME as the new volume: its filesystem and data, at least "
                    "its size.")] = "",
           from_volume: Annotated[str, typer.Option(
               "--from-volume", metavar="VOLUME",
               help="Clone VOLUME, mounted or not, as the new volume (a mounted one is frozen for the "
                    "moment of the copy).")] = "",
           root: RootOption = DEFAULT_ROOT) -> None:
    """Create and format a volume ahead of its first mount; refused past the pool's real room.

    With --from-snapshot or --from-volume, a copy of that snapshot or volume instead (restore,
    clone): same filesystem, recorded as formatted, a new filesystem UUID for xfs and btrfs so
    it mounts beside its source.

    Example: [bold]flexvol create data-1 --size 10Gi[/], or
    [bold]flexvol create data-2 --from-snapshot data-1-monday[/]
    """
    from flexvol.core.options import THICK, THIN

    if thin and thick:
        raise typer.BadParameter("choose --thin or --thick, not both")
    if from_snapshot and from_volume:
        raise typer.BadParameter("choose --from-snapshot or --from-volume, not both")
    copying = bool(from_snapshot or from_volume)
    if copying and fs != "ext4":
        raise typer.BadParameter("a restored or cloned volume keeps its source's filesystem: leave out --fs")
    if size or not copying:
        check_size(size, "--size")  # an empty --size is refused, never the driver's 1Gi default
    config = load_config(root)
    out = console()
    args = (volume_id, "--size", size, "--fs", fs) + (("--thin",) if thin else ()) + \
        (("--thick",) if thick else ()) + (("--from-snapshot", from_snapshot) if from_snapshot else ()) + \
        (("--from-volume", from_volume) if from_volume else ())
    with journaled(config, "create", volume_id, args) as action:
        with Progress(TextColumn("copying" if copying else "reserving"), BarColumn(),
                      DownloadColumn(binary_units=True), TimeRemainingColumn(), console=out,
                      transient=True, disable=(thin and not copying) or not out.is_terminal) as bar:
            task = bar.add_task("reserve", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            record = lifecycle.create(config, volume_id, size, fs, allocation=THIN if thin else "",
                                      progress=progress, from_snapshot=from_snapshot,
                                      from_volume=from_volume)
        formatted = record.formatted or {}
        kind = "thick (every block reserved)" if record.allocation == THICK else "thin"
        origin = (f" from snapshot {from_snapshot}" if from_snapshot else
                  f" as a clone of {from_volume}" if from_volume else "")
        action.message = (f"created {volume_id}{origin}: {human_bytes(record.size_bytes)} "
                          f"{formatted.get('fs_type', fs)} {kind} at {config.backing_file(volume_id)}")
    out.print(action.message)


@app.command()
@friendly_errors
def delete(volume_id: VolumeArgument,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
           root: RootOption = DEFAULT_ROOT) -> None:
    """Delete a volume and its data. Refused while it is attached or mounted.

    Example: [bold]flexvol delete data-1 --yes[/]
    """
    config = load_config(root)
    reasons = lifecycle.in_use(config, volume_id)
    if reasons:
        from flexvol.core.errors import Refused

        raise Refused(f"volume {volume_id} is in use: {'; '.join(reasons)}",
                      "stop the pods that use it (the kubelet then unmounts it) and try again")
    if not yes and not typer.confirm(f"delete volume {volume_id} and all its data?", default=False):
        raise typer.Exit(1)
    with journaled(config, "delete", volume_id, (volume_id,)) as action:
        removed = lifecycle.delete(config, volume_id)
        action.message = f"deleted {volume_id}" + (f" ({', '.join(removed)})" if removed else "")
    console().print(action.message)


@app.command()
@friendly_errors
def resize(volume_id: VolumeArgument,
           size: Annotated[str, typer.Argument(help="The new size, a Kubernetes quantity (never smaller).",
                                               metavar="SIZE")],
           root: RootOption = DEFAULT_ROOT) -> None:
    """Grow a volume and its filesystem, mounted or not (the driver's expandfs steps); a raw
    block volume (CSI) has no filesystem: its file and loop device grow, as the device shows.

    Example: [bold]flexvol resize data-1 20Gi[/]
    """
    check_size(size, "SIZE")
    config = load_config(root)
    with journaled(config, "resize", volume_id, (volume_id, size)) as action:
        new = lifecycle.resize(config, volume_id, size)
        action.message = f"{volume_id} is now {human_bytes(new)}"
    console().print(action.message)


@app.command()
@friendly_errors
def capacity(output: OutputOption = None, no_headers: NoHeadersOption = False,
             json_output: JsonAliasOption = False, root: RootOption = DEFAULT_ROOT) -> None:
    """The pool filesystem's size and free space against what volumes promise and use.

    -o name prints the pool's path.

    Example: [bold]flexvol capacity[/] or [bold]flexvol capacity -o json[/]
    """
    output = resolve(output, json_output)
    config = load_config(root, must_exist=True)
    found = inventory.capacity(config, inventory.volumes(config))
    emit(render.capacity_rows(found), render.CAPACITY_COLUMNS, output, no_headers, data=found.as_dict(),
         name=lambda row: str(row["value"]) if row["field"] == "pool" else "", show_header=False)
