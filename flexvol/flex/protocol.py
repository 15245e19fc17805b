"""The FlexVolume wire: status words, the options argument and the one reply a call prints.

See docs/flexvolume.md sections 2 to 4. This module is the only writer of a reply.
"""

from __future__ import annotations

import os

from flexvol.core import wirejson
from flexvol.core.errors import InvalidInput

SUCCESS = "Success"
FAILURE = "Failure"
NOT_SUPPORTED = "Not supported"

# The option keys the kubelet sends are core/options.py's: the core parses them.


class Reply:
    """One driver answer. `fields` holds the optional keys: device, attached, capabilities."""

    __slots__ = ("fields", "message", "status")

    def __init__(self, status: str, message: str = "", **fields: object) -> None:
        self.status = status
        self.message = message
        self.fields = fields

    @property
    def exit_code(self) -> int:
        # Success must exit 0 (docs/flexvolume.md section 2); Not supported exits 0 as the examples do.
        return 1 if self.status == FAILURE else 0

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"status": self.status}
        if self.message:
            body["message"] = self.message
        for key, value in self.fields.items():
            if value is not None:
                body[key] = value
        return body

    def render(self) -> str:
        return wirejson.dumps(self.as_dict()) + "\n"


def success(message: str = "", **fields: object) -> Reply:
    return Reply(SUCCESS, message, **fields)


def failure(message: str) -> Reply:
    return Reply(FAILURE, message or "unknown error")


def not_supported(verb: str) -> Reply:
    return Reply(NOT_SUPPORTED, f"{verb!r} is not supported by this driver" if verb else "")


def parse_options(text: str) -> dict[str, str]:
    """Parse the options argument: one JSON object whose values are all strings."""
    if not text.strip():
        raise InvalidInput("the options argument is empty", "pass the volume options as a JSON object")
    try:
        value = wirejson.loads(text)
    except ValueError as error:
        raise InvalidInput(f"the options argument is not valid JSON: {error}",
                           "pass the volume options as one JSON object") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"the options argument must be a JSON object, not {_json_kind(value)}",
                           'pass e.g. {"volumeID": "v1"}')
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidInput(f"option {key!r} must be a JSON string, not {_json_kind(item)}",
                               "the kubelet sends every option as a string; quote the value")
    return value


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string"


def write_reply(reply: Reply, fd: int) -> None:
    data = reply.render().encode()
    while data:
        written = os.write(fd, data)
        data = data[written:]
