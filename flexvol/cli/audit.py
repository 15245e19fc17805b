"""The toolkit's own actions (create, delete, resize, repair) in the driver's call journal, as
"toolkit:<action>" lines beside the kubelet's calls: `flexvol calls` and `flexvol show` then
tell what changed a volume, who did it and with which commands, whoever asked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from flexvol.core import journal, runner
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError

PREFIX = "toolkit:"


def who() -> str:
    """The user running the toolkit, and the one behind sudo if any."""
    uid = os.getuid()
    try:
        import pwd

        name = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        name = "?"
    sudo = os.environ.get("SUDO_USER")
    return f"{name} (uid {uid})" + (f" via sudo by {sudo}" if sudo and sudo != name else "")


class Action:
    """Filled in by the command: what it did, in one sentence for the journal."""

    def __init__(self, call: journal.CallInfo) -> None:
        self.call = call
        self.message = ""


@contextmanager
def journaled(config: Config, action: str, volume_id: str = "",
              args: tuple[str, ...] = ()) -> Iterator[Action]:
    """Journal the action run inside: Success with the message the command set, or Failure
    with the error; the error still reaches the command."""
    call = journal.CallInfo(PREFIX + action)
    call.volume_id = volume_id
    call.args = list(args)
    call.who = who()
    done = Action(call)
    # A call of its own: its journal line lists only the commands this action ran.
    with runner.call() as context:
        try:
            yield done
        except FlexvolError as error:
            journal.append(config, call, "Failure", error.message, context.history)
            raise
        except Exception as error:
            journal.append(config, call, "Failure", f"{type(error).__name__}: {error}", context.history)
            raise
        journal.append(config, call, "Success", done.message or f"{action} done", context.history)
