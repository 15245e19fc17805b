"""Walking the record directories of the data root (docs/layout.md section 1): the one place
that lists `records/`, `targets/`, `pvs/` and `snapshots/`, so every reader skips the same temporary files
and meets corrupt entries the same way.

Each walk is sorted by file name. A corrupt entry raises StateCorrupt, unless the caller
passes `on_corrupt`, which is then told of it (path and error) and the entry is skipped.
"""

from __future__ import annotations

import os

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.core.errors import StateCorrupt
from flexvol.core.records import Attachment, Record, Snapshot, Target

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    OnCorrupt = Callable[[str, StateCorrupt], None] | None

SUFFIX = ".json"


def entries(directory: str, suffix: str = SUFFIX) -> list[str]:
    """The names (without `suffix`) of the entries of `directory` ending in it, sorted; the
    temporary files of atomic writes (`.<name>.<pid>.tmp`) and other dot files are skipped."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(name[: -len(suffix)] for name in names
                  if name.endswith(suffix) and not name.startswith("."))


def record_ids(config: Config) -> list[str]:
    """The ids of the volumes that have a record, readable or not."""
    return entries(config.records_dir)


def iter_records(config: Config, on_corrupt: OnCorrupt = None) -> Iterator[Record]:
    """Every volume record; one whose `volume_id` is not its file's name counts as corrupt."""
    for volume_id in record_ids(config):
        path = config.record_path(volume_id)
        try:
            record = _load(Record, path)
            if record is not None and record.volume_id != volume_id:
                raise StateCorrupt(f"volume record {path} names volume {record.volume_id!r}",
                                   "move it aside: the volume's record is rebuilt from its backing file")
        except StateCorrupt as error:
            _corrupt(on_corrupt, path, error)
            continue
        if record is not None:
            yield record


def iter_targets(config: Config, on_corrupt: OnCorrupt = None) -> Iterator[tuple[str, Target]]:
    """(file path, record) of every mount target record."""
    yield from _walk(Target, config.targets_dir, on_corrupt)


def iter_attachments(config: Config, on_corrupt: OnCorrupt = None) -> Iterator[Attachment]:
    """Every PV record."""
    for _path, attachment in _walk(Attachment, config.pvs_dir, on_corrupt):
        yield attachment


def snapshots_dir(config: Config) -> str:
    return os.path.join(config.data_root, "snapshots")


def load_snapshot(config: Config, name: str) -> Snapshot | None:
    """Snapshot `name`'s record, None when there is none; StateCorrupt when unreadable."""
    return _load(Snapshot, os.path.join(snapshots_dir(config), name + SUFFIX))  # type: ignore[return-value]


def iter_snapshots(config: Config, on_corrupt: OnCorrupt = None) -> Iterator[Snapshot]:
    """Every snapshot record, ready or not; one whose `name` is not its file's name counts as
    corrupt."""
    for path, snapshot in _walk(Snapshot, snapshots_dir(config), on_corrupt):
        if snapshot.name + SUFFIX != os.path.basename(path):  # type: ignore[attr-defined]
            _corrupt(on_corrupt, path, StateCorrupt(
                f"snapshot record {path} names snapshot {snapshot.name!r}",  # type: ignore[attr-defined]
                "move it aside: its file can be removed by hand"))
            continue
        yield snapshot  # type: ignore[misc]


def _walk(kind: type, directory: str, on_corrupt: OnCorrupt) -> Iterator[tuple[str, object]]:
    for name in entries(directory):
        path = os.path.join(directory, name + SUFFIX)
        try:
            item = _load(kind, path)
        except StateCorrupt as error:
            _corrupt(on_corrupt, path, error)
            continue
        if item is not None:  # removed since the listing
            yield path, item


def _load(kind: type, path: str) -> object:
    data = state.read_json(path)
    return None if data is None else kind.from_json(data, path)


def _corrupt(on_corrupt: OnCorrupt, path: str, error: StateCorrupt) -> None:
    if on_corrupt is None:
        raise error
    on_corrupt(path, error)
