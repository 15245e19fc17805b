"""The kinds of record flexvol keeps under its data root, typed (docs/layout.md sections 2-4
and 8): `Record` (a volume), `Target` (a mount dir -> its volume), `Attachment` (a PV name ->
its volume and the nodes it is attached to) and `Snapshot` (a snapshot of a volume).

Each is read with `from_json`, which checks the schema and every known field's type and
raises StateCorrupt naming the file and the field, and written with `to_json`, which gives
back the same keys in the same order as were read: keys a newer flexvol wrote that this one
does not know are kept aside and written back, so running an older flexvol loses nothing.

Hand-written classes with __slots__, not `dataclasses`: importing it costs about 12 ms, on the
FlexVolume driver's per-call path, whose latency is measured.
"""

from __future__ import annotations

from flexvol.core.errors import StateCorrupt

SCHEMA = 1

# Field kinds: "int", "str", "bool", "dict" (a JSON object), "strs" (a list of strings); a
# trailing "?" allows null. A field is either always written (with its default when unset) or
# written only when not None.
_CHECKS = {
    "int": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "str": lambda value: isinstance(value, str),
    "bool": lambda value: isinstance(value, bool),
    "dict": lambda value: isinstance(value, dict),
    "strs": lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value),
}
_NAMES = {"int": "a whole number", "str": "a string", "bool": "true or false",
          "dict": "an object", "strs": "a list of strings"}
_ALWAYS = True
_OPTIONAL = False


class _Stored:
    """What the record classes share: the field table, validation and the round trip."""

    __slots__ = ("_order", "extra", "schema")
    # (name, kind, always written, default); the identity fields come first and are required.
    _FIELDS: tuple[tuple[str, str, bool, object], ...] = ()
    _REQUIRED: tuple[str, ...] = ()
    _WHAT = "record"
    _HINT = ("move it aside and retry: a volume's record is rebuilt from its backing file, a "
             "mount dir's or PV's by the next mount or attach")

    schema: int
    extra: dict
    _order: tuple[str, ...]

    def _init(self) -> None:
        self.schema = SCHEMA
        self.extra = {}
        self._order = ()
        for name, _kind, _always, default in self._FIELDS:
            setattr(self, name, list(default) if isinstance(default, list) else default)

    @classmethod
    def from_json(cls, data: object, path: str):
        """The record `data` (as parsed from `path`), or StateCorrupt saying what is wrong."""
        if not isinstance(data, dict):
            raise StateCorrupt(f"{cls._WHAT} {path} is corrupt: not a JSON object", cls._HINT)
        schema = data.get("schema")
        if schema != SCHEMA:
            raise StateCorrupt(f"{cls._WHAT} {path} has schema {schema!r}, this flexvol reads "
                               f"schema {SCHEMA}", "upgrade flexvol")
        for name in cls._REQUIRED:
            if name not in data:
                raise StateCorrupt(f"{cls._WHAT} {path} is corrupt: it has no {name!r}", cls._HINT)
        self = cls.__new__(cls)
        self._init()
        known = set()
        for name, kind, _always, _default in cls._FIELDS:
            known.add(name)
            if name not in data:
                continue
            value = data[name]
            nullable = kind.endswith("?")
            base = kind.rstrip("?")
            if not (value is None and nullable) and not _CHECKS[base](value):
                raise StateCorrupt(f"{cls._WHAT} {path} is corrupt: {name!r} is {_describe(value)}, "
                                   f"not {_NAMES[base]}{' or null' if nullable else ''}", cls._HINT)
            setattr(self, name, list(value) if base == "strs" and value is not None else value)
        self.extra = {key: value for key, value in data.items() if key not in known and key != "schema"}
        self._order = tuple(data)
        return self

    def to_json(self) -> dict:
        """The record as a JSON object, in the key order it was read in (new keys last)."""
        body: dict = {"schema": self.schema}
        for name, _kind, always, _default in self._FIELDS:
            value = getattr(self, name)
            if always or value is not None:
                body[name] = list(value) if isinstance(value, (list, tuple)) else value
        for key, value in self.extra.items():
            body.setdefault(key, value)
        if not self._order:
            return body
        ordered = {key: body[key] for key in self._order if key in body}
        ordered.update(body)
        return ordered

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_json() == other.to_json()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment] - mutable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_json()!r})"


def _describe(value: object) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


class Record(_Stored):
    """A volume's record: `records/<id>.json` (docs/layout.md section 2)."""

    __slots__ = ("adopted", "allocation", "block", "claim", "created_at", "created_by", "csi_name",
                 "ephemeral", "formatted", "fs_type", "growing", "loop_attaching", "loop_device",
                 "mkfs_started", "namespace", "pv_name", "pv_names", "pv_uid", "reserved",
                 "restored_from", "restoring", "shareable", "size_bytes", "volume_id")
    _WHAT = "volume record"
    _REQUIRED = ("volume_id",)
    _FIELDS = (
        ("volume_id", "str", _ALWAYS, ""),
        ("size_bytes", "int", _ALWAYS, 0),
        ("fs_type", "str", _ALWAYS, ""),
        ("created_at", "str", _ALWAYS, ""),
        ("formatted", "dict?", _ALWAYS, None),
        ("mkfs_started", "dict?", _ALWAYS, None),
        ("loop_device", "str?", _ALWAYS, None),
        ("pv_names", "strs", _ALWAYS, []),
        ("loop_attaching", "bool?", _OPTIONAL, None),
        ("adopted", "bool?", _OPTIONAL, None),
        ("allocation", "str?", _OPTIONAL, None),
        ("reserved", "bool?", _OPTIONAL, None),
        ("growing", "dict?", _OPTIONAL, None),
        ("namespace", "str?", _OPTIONAL, None),
        ("shareable", "bool?", _OPTIONAL, None),
        ("pv_name", "str?", _OPTIONAL, None),
        ("pv_uid", "str?", _OPTIONAL, None),
        ("claim", "str?", _OPTIONAL, None),
        ("created_by", "str?", _OPTIONAL, None),
        ("csi_name", "str?", _OPTIONAL, None),
        ("ephemeral", "bool?", _OPTIONAL, None),
        ("restoring", "dict?", _OPTIONAL, None),
        ("restored_from", "dict?", _OPTIONAL, None),
        ("block", "bool?", _OPTIONAL, None),
    )

    volume_id: str
    size_bytes: int
    fs_type: str
    created_at: str
    formatted: dict | None          # {"fs_type", "uuid", "at"} once the volume holds a filesystem
    mkfs_started: dict | None       # {"fs_type", "at"} while a mkfs of ours runs
    loop_device: str | None         # a cache: trusted only after sysfs confirms it
    pv_names: list[str]
    loop_attaching: bool | None
    adopted: bool | None
    allocation: str | None          # "thick" or "thin"; None (absent) on volumes older than thick
    reserved: bool | None
    growing: dict | None            # {"to", "since", "error"} while a growth is unfinished
    namespace: str | None
    shareable: bool | None
    pv_name: str | None
    pv_uid: str | None
    claim: str | None
    created_by: str | None
    csi_name: str | None
    ephemeral: bool | None
    restoring: dict | None          # {"from_snapshot"/"from_volume", "at"} until a copy is whole
    restored_from: dict | None      # {"from_snapshot" or "from_volume", "method"} once it is
    block: bool | None              # a raw block volume: never formatted

    def __init__(self, volume_id: str, size_bytes: int, fs_type: str, created_at: str) -> None:
        self._init()
        self.volume_id = volume_id
        self.size_bytes = size_bytes
        self.fs_type = fs_type
        self.created_at = created_at

    @property
    def formatted_fs(self) -> str:
        """The filesystem the volume was formatted with, "" before its first format."""
        return str((self.formatted or {}).get("fs_type") or "")


class Target(_Stored):
    """A mount dir's record: `targets/<key>.json` (docs/layout.md section 3)."""

    __slots__ = ("fs_type", "mode", "mount_options", "path", "pod", "volume_id")
    _WHAT = "mount target record"
    _REQUIRED = ("path", "volume_id")
    _FIELDS = (
        ("path", "str", _ALWAYS, ""),
        ("volume_id", "str", _ALWAYS, ""),
        ("pod", "str?", _OPTIONAL, None),
        ("mode", "str?", _OPTIONAL, None),
        ("fs_type", "str?", _OPTIONAL, None),
        ("mount_options", "strs?", _OPTIONAL, None),
    )

    path: str
    volume_id: str
    pod: str | None                 # "namespace/name", when the kubelet sent it
    mode: str | None                # "rw" or "ro"; None on records older than repair's remount
    fs_type: str | None
    mount_options: list[str] | None

    def __init__(self, path: str, volume_id: str) -> None:
        self._init()
        self.path = path
        self.volume_id = volume_id


class Attachment(_Stored):
    """A PV's record: `pvs/<pv name>.json` (docs/layout.md section 4)."""

    __slots__ = ("nodes", "pv_name", "volume_id")
    _WHAT = "PV record"
    _REQUIRED = ("pv_name", "volume_id")
    _FIELDS = (
        ("pv_name", "str", _ALWAYS, ""),
        ("volume_id", "str", _ALWAYS, ""),
        ("nodes", "strs", _ALWAYS, []),
    )

    pv_name: str
    volume_id: str
    nodes: list[str]                # sorted

    def __init__(self, pv_name: str, volume_id: str, nodes: list[str]) -> None:
        self._init()
        self.pv_name = pv_name
        self.volume_id = volume_id
        self.nodes = sorted(nodes)


class Snapshot(_Stored):
    """A snapshot's record: `snapshots/<name>.json` (docs/layout.md section 8)."""

    __slots__ = ("block", "created_at", "csi_name", "frozen", "fs_type", "method", "name", "ready",
                 "size_bytes", "source_volume", "uuid")
    _WHAT = "snapshot record"
    _REQUIRED = ("name", "source_volume")
    _HINT = ("move it aside: a snapshot whose record is unreadable is not listed, and its file "
             "can be removed by hand")
    _FIELDS = (
        ("name", "str", _ALWAYS, ""),
        ("source_volume", "str", _ALWAYS, ""),
        ("size_bytes", "int", _ALWAYS, 0),
        ("fs_type", "str?", _ALWAYS, None),
        ("uuid", "str?", _ALWAYS, None),
        ("created_at", "str", _ALWAYS, ""),
        ("ready", "bool", _ALWAYS, False),
        ("block", "bool?", _OPTIONAL, None),
        ("csi_name", "str?", _OPTIONAL, None),
        ("frozen", "bool?", _OPTIONAL, None),
        ("method", "str?", _OPTIONAL, None),
    )

    name: str
    source_volume: str
    size_bytes: int                 # the volume's file when taken
    fs_type: str | None             # the volume's filesystem; None for a raw block volume
    uuid: str | None
    created_at: str
    ready: bool                     # false until the copy is whole: never listed, never restored
    block: bool | None              # of a raw block volume: its copies are raw block volumes
    csi_name: str | None
    frozen: bool | None             # its filesystem was frozen for the copy (mounted)
    method: str | None              # "reflink" or "copy", once taken

    def __init__(self, name: str, source_volume: str, size_bytes: int, created_at: str) -> None:
        self._init()
        self.name = name
        self.source_volume = source_volume
        self.size_bytes = size_bytes
        self.created_at = created_at

    def set_fields(self, fields: dict) -> None:
        """A front end's own fields (the CSI name): known ones as attributes, others kept."""
        for key, value in fields.items():
            if any(key == name for name, *_rest in self._FIELDS):
                setattr(self, key, value)
            else:
                self.extra[key] = value
