"""Can this process read the data root? A wrong or unreadable root must not look like an empty
pool: `ls`, `capacity`, `calls`, `repair` and `doctor` would report nothing wrong.

Toolkit only: the driver makes its data root on first use.
"""

from __future__ import annotations

import os
import stat

from flexvol.core.config import DEFAULT_DATA_ROOT, Config
from flexvol.core.errors import FlexvolError


def problem(config: Config) -> FlexvolError | None:
    """Why the data root cannot be read as a pool (missing, not a dir, no permission), or None."""
    root = config.data_root
    try:
        info = os.stat(root)
    except FileNotFoundError:
        return FlexvolError(f"data root {root} does not exist", _where_hint())
    except OSError as error:
        return _unreadable(root, error.strerror)
    if not stat.S_ISDIR(info.st_mode):
        return FlexvolError(f"data root {root} is not a directory", _where_hint())
    # What the toolkit reads: a dir it can list, files it can open.
    for path in (root, config.records_dir, config.volumes_dir, config.targets_dir, config.log_dir):
        if os.path.lexists(path) and not _can(path, os.R_OK | os.X_OK):
            return _unreadable(path, "permission denied")
    for path in (config.journal_path, config.journal_path + ".1"):
        if os.path.lexists(path) and not _can(path, os.R_OK):
            return _unreadable(path, "permission denied")
    return None


def _can(path: str, mode: int) -> bool:
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _where_hint() -> str:
    return (f"name the driver's data root with --root or FLEXVOL_ROOT (default {DEFAULT_DATA_ROOT}; "
            "install.sh makes it)")


def _unreadable(path: str, why: str) -> FlexvolError:
    return FlexvolError(f"cannot read {path}: {why} (running as uid {os.geteuid()})",
                        "run as root (sudo flexvol ...), or name a data root you can read with --root "
                        "or FLEXVOL_ROOT")
