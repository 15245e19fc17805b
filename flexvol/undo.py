"""Roll back what one call changed, in reverse, when the call fails.

The kubelet never calls unmount for a mount it did not see succeed (FLEXVOLUME.md 5), so a
failing mount must leave nothing of its own behind. Formatting is never undone, and what
existed before the call is never touched: steps push an undo action only for what they made.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Undo:
    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], object]]] = []
        self.errors: list[str] = []
        self.done: list[str] = []

    def push(self, description: str, action: Callable[[], object]) -> None:
        self._actions.append((description, action))

    def commit(self) -> None:
        """The call succeeded: keep everything it made."""
        self._actions.clear()

    def rollback(self) -> None:
        """Undo every pushed action, newest first; record (never raise) what could not be undone."""
        while self._actions:
            description, action = self._actions.pop()
            try:
                action()
                self.done.append(description)
            except Exception as error:
                self.errors.append(f"{description}: {error}")
