"""Roll back what one call changed, in reverse, when the call fails.

The kubelet never calls unmount for a mount it did not see succeed (docs/flexvolume.md section 5), so a
failing mount must leave nothing of its own behind. Formatting is never undone, and what
existed before the call is never touched: steps push an undo action only for what they made.

An action that returns is not proof that it worked (a detach of a device someone holds open
only marks it for autoclear), so each action comes with a check of the kernel or the disk:
"rolled back" is said only when the check confirms it.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # Returns "" when the action's outcome holds, else what is still true ("mounted at /x").
    Check = Callable[[], str]


# ---- checks for the actions the steps push -----------------------------------------------------

def path_gone(path: str) -> Check:
    def check() -> str:
        return "still there" if os.path.lexists(path) else ""
    return check


def unmounted(target: str) -> Check:
    def check() -> str:
        from flexvol.core import kernel

        here = kernel.mounts_at(target)
        return f"still mounted from {here[-1].source}" if here else ""
    return check


def loop_detached(device: str) -> Check:
    def check() -> str:
        from flexvol.core import kernel

        backing = kernel.loop_backing_file(device)
        return f"still attached to {backing}" if backing is not None else ""
    return check


def guard_lifted(target: str) -> Check:
    def check() -> str:
        from flexvol.core import guard

        return "still immutable" if guard.is_guarded(target) else ""
    return check


class Undo:
    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], object], Check | None]] = []
        self.errors: list[str] = []
        self.done: list[str] = []

    def push(self, description: str, action: Callable[[], object], verify: Check | None = None) -> None:
        self._actions.append((description, action, verify))

    def commit(self) -> None:
        """The call succeeded: keep everything it made."""
        self._actions.clear()

    def rollback(self) -> None:
        """Undo every pushed action, newest first; record (never raise) what could not be undone."""
        while self._actions:
            description, action, verify = self._actions.pop()
            try:
                action()
            except Exception as error:
                self.errors.append(f"{description}: {error}")
                continue
            try:
                left = verify() if verify is not None else ""
            except Exception as error:
                left = f"unverified: {error}"
            if left:
                self.errors.append(f"{description} ({left})")
            else:
                self.done.append(description)

    # The checks as attributes too, so that a step holding an Undo needs no import of its own:
    # undo.push("unmount /x", ..., undo.unmounted("/x")).
    path_gone = staticmethod(path_gone)
    unmounted = staticmethod(unmounted)
    loop_detached = staticmethod(loop_detached)
    guard_lifted = staticmethod(guard_lifted)
