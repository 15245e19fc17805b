"""Help that names values as people write them: `--root PATH`, `--size SIZE`, `VOLUME`, never
typer's `<str>`, `<bool>` or `<list[str]>`.

Every command and the group get their parameters through these classes (main.app uses them),
so a new command needs nothing: an option without a metavar= shows its name in capitals, a
flag shows nothing after it, a choice its values.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class Argument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name column already says VOLUME, SIZE...

    def _usage_display_name(self) -> str:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"


class Option(TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return ""
        if self.metavar is not None:
            return self.metavar
        if self.type_descriptor.is_choice:
            return "[" + self.display_type(ctx).strip("<>") + "]"
        return (self.name or "value").upper() + ("..." if self.nargs != 1 else "")


def plain(params: list[Any]) -> list[Any]:
    """Give typer's parameters the displays above (same objects, same behaviour otherwise)."""
    for param in params:
        if type(param) is TyperArgument:
            param.__class__ = Argument
        elif type(param) is TyperOption:
            param.__class__ = Option
        if isinstance(param, TyperArgument) and param.metavar is None and param.name:
            param.metavar = param.name.upper()
    return params


class Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return plain(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return plain(super().get_params(ctx))


class Typer(typer.Typer):
    """typer.Typer whose commands use Command unless told otherwise."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or Command, **kwargs)
