"""The one name → thing table (timm / open_clip style), used for audio encoders, mel
front ends, dataset readers, weights entries and evaluation tables.

A module fills its own table when imported (``@TABLE.register("name")`` on a function or
class, or ``TABLE.register("name", obj)``); ``TABLE.get(name)`` looks a name up and an
unknown name is always the same one-line error, listing what exists. *Families* are
names of the form ``"<family>:<arg>"`` whose builder receives ``<arg>`` first (e.g.
``timm:efficientnet_b0``). No star-imports, no entry points."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sound2img.errors import UserInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Things of one ``kind`` (used in messages: ``"audio encoder"``) by exact name, plus
    builder families. ``error`` is the ``UserInputError`` subclass an unknown name raises."""

    # Beyond this many names an unknown-name error lists the close ones, not all of them.
    MAX_LISTED = 12

    def __init__(self, kind: str, error: type[UserInputError] = UserInputError, hint: str = ""):
        self.kind = kind
        self.error = error
        self.hint = hint  # appended to the unknown-name error, e.g. "see --list"
        self._items: dict[str, T] = {}
        self._families: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, obj: T | None = None, *, family: bool = False, overwrite: bool = False) -> Any:
        """``register(name, obj)`` adds ``obj`` and returns it; ``register(name)`` is the
        decorator form. ``family=True`` registers a builder for ``"<name>:<arg>"``.
        A name registered twice is an error unless ``overwrite``."""
        if ":" in name:
            raise ValueError(f"{self.kind} name {name!r} must not contain ':'")

        def add(thing):
            table = self._families if family else self._items
            if name in table and not overwrite:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            table[name] = thing
            return thing

        return add if obj is None else add(obj)

    def names(self) -> list[str]:
        """Exact names, sorted (what ``list_*`` functions return)."""
        return sorted(self._items)

    def families(self) -> list[str]:
        """Family prefixes, sorted (each used as ``"<family>:<arg>"``)."""
        return sorted(self._families)

    def items(self) -> list[tuple[str, T]]:
        """``(name, thing)`` pairs in registration order."""
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        try:
            self.get(str(name))
        except UserInputError:
            return False
        return True

    def suggest(self, name: str) -> str:
        """``known: a, b, fam:<name>`` for a short table, else the close names of a long one."""
        known = self.names() + [f"{f}:<name>" for f in self.families()]
        if len(known) <= self.MAX_LISTED:
            text = f"known: {', '.join(known)}"
        else:
            close = difflib.get_close_matches(str(name), self.names(), n=5, cutoff=0.5)
            text = f"close names: {', '.join(close)}" if close else f"no close registered {self.kind}"
        return f"{text}; {self.hint}" if self.hint else text

    def unknown(self, name: str) -> UserInputError:
        """The one unknown-name error: ``unknown <kind> '<name>' (known: a, b, fam:<name>)``."""
        return self.error(f"unknown {self.kind} {name!r} ({self.suggest(name)})")

    def __getitem__(self, name: object) -> Any:
        """``table[name]`` is ``table.get(str(name))``: names are text (a depth 50 is ``"50"``)."""
        return self.get(str(name))

    def get(self, name: str) -> Any:
        """The thing registered as ``name``; for ``"<family>:<arg>"`` the family builder
        bound to ``<arg>``. ``self.error`` listing what exists when the name is unknown."""
        if name in self._items:
            return self._items[name]
        family, sep, arg = str(name).partition(":")
        if sep and family in self._families and arg:
            fn = self._families[family]
            return lambda *a, **kw: fn(arg, *a, **kw)
        raise self.unknown(name)
