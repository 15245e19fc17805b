"""The checks, in the order they run. Each names the docs/flexvolume.md section it enforces and
raises CheckFailed; a check that needs a capability the driver does not claim returns a SKIP
reason from `needs`. Every check tears down what it set up; the engine then scans for leftovers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flexvol.sanity.context import Context
from flexvol.sanity.resize_checks import check_expandfs, check_fsgroup, needs_own_fsgroup, needs_resize
from flexvol.sanity.volume_checks import (
    check_concurrent,
    check_lifecycle,
    check_no_reformat,
    check_read_only,
    check_repeat,
    check_rollback,
)
from flexvol.sanity.wire_checks import (
    ALL_VERBS,
    check_bounded_time,
    check_exit_codes,
    check_init,
    check_not_supported_stable,
    check_output,
)

__all__ = ["ALL_VERBS", "CHECKS", "CHECK_NAMES", "Check"]


@dataclass(frozen=True)
class Check:
    name: str
    section: str
    title: str
    # Returns an optional note shown with a PASS.
    run: Callable[[Context], str | None]
    needs: Callable[[Context], str] = lambda ctx: ""


CHECKS: tuple[Check, ...] = (
    Check("init", "1, 2, 10", "init answers Success, capabilities are booleans, fast, writes nothing",
          check_init),
    Check("bounded-time", "2, 6, 10", "every call ends within the timeout; no child keeps the pipes open",
          check_bounded_time),
    Check("output", "2, 10", "every answer, also to empty or odd arguments, is exactly one JSON object",
          check_output),
    Check("exit-codes", "2, 10", "Success exits 0; Failure carries a message", check_exit_codes),
    Check("not-supported-stable", "2, 3, 10", "which verbs answer Not supported never depends on arguments",
          check_not_supported_stable),
    Check("lifecycle", "3, 5, 10", "the kubelet's full flow, data survives, the last unmount frees all",
          check_lifecycle),
    Check("repeat", "6, 10", "every verb repeated succeeds without a second mount", check_repeat),
    Check("concurrent", "6, 10", "concurrent mounts of one volume succeed and share one device",
          check_concurrent),
    Check("read-only", "4, 10", "readwrite=ro mounts read-only and never formats", check_read_only),
    Check("no-reformat", "8.7, 9, 10", "a volume with data is never formatted again", check_no_reformat),
    Check("rollback", "5, 10", "a failed mount leaves no mount, loop device or file behind", check_rollback),
    Check("expandfs", "7, 10", "expandfs grows the filesystem to the new size, repeatably", check_expandfs,
          needs_resize),
    Check("fsgroup", "4, 7", "the pod's fsGroup is applied when the fsGroup capability is false",
          check_fsgroup, needs_own_fsgroup),
)

CHECK_NAMES = tuple(check.name for check in CHECKS)
