"""How a CSI RPC ends: the status codes of the spec, and the one wrapper every RPC goes through.

The library raises FlexvolError (errors.py) with a message a person can act on; here each kind
becomes the gRPC status the CSI spec names for it, and anything unexpected becomes INTERNAL with
its type and message (the traceback goes to the plugin's log, never to the caller).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from flexvol.core import runner
from flexvol.core.errors import Busy, Conflict, FlexvolError, InvalidInput, Refused

log = logging.getLogger("flexvol.csi")

Code = grpc.StatusCode
F = TypeVar("F", bound=Callable[..., Any])


class CsiError(Exception):
    """End the RPC with `code` and `message`."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> CsiError:
    return CsiError(Code.INVALID_ARGUMENT, message)


def require(value: str, what: str) -> str:
    """A request field the spec says is required: INVALID_ARGUMENT when it is empty."""
    if not value:
        raise invalid(f"{what} is missing")
    return value


def code_of(error: FlexvolError) -> grpc.StatusCode:
    """The status of a library error: bad input, a busy lock, a refusal, or a failure."""
    if isinstance(error, InvalidInput):
        return Code.INVALID_ARGUMENT
    if isinstance(error, Busy):
        # Another call holds the volume's lock: the CO retries with backoff.
        return Code.ABORTED
    if isinstance(error, Conflict):
        # Staged or published already, incompatibly with this request (the spec's word).
        return Code.ALREADY_EXISTS
    if isinstance(error, Refused):
        return Code.FAILED_PRECONDITION
    return Code.INTERNAL


def _subject(request: object) -> str:
    for field in ("volume_id", "name"):
        value = getattr(request, field, "")
        if isinstance(value, str) and value:
            return value
    return "-"


def rpc(method: F) -> F:
    """Run one RPC: its reply, or context.abort with the status its error maps to; one log line."""

    @functools.wraps(method)
    def wrapper(self: object, request: object, context: grpc.ServicerContext) -> object:
        started = time.monotonic()
        try:
            # A call of its own (runner.CallContext): its children inherit only its locks, never
            # those of an RPC on another pool thread, and its commands are its own.
            with runner.call():
                reply = method(self, request, context)
        except CsiError as error:
            code, message = error.code, error.message
        except FlexvolError as error:
            code, message = code_of(error), str(error)
        except Exception as error:
            log.exception("%s failed unexpectedly", method.__name__)
            code, message = Code.INTERNAL, f"internal error: {type(error).__name__}: {error}"
        else:
            log.info("%s %s OK %.1fms", method.__name__, _subject(request),
                     (time.monotonic() - started) * 1000)
            return reply
        log.info("%s %s %s %.1fms: %s", method.__name__, _subject(request), code.name,
                 (time.monotonic() - started) * 1000, message)
        context.abort(code, message)
        raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises

    return wrapper  # type: ignore[return-value]
