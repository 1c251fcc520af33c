"""A small name → builder table for architectures that checkpoints refer to by name
(audio encoders, generator specs): a decorator fills it, ``build`` looks names up."""
from __future__ import annotations

from typing import Any, Callable

from sound2img.errors import UserInputError


class Registry:
    """Builders by exact name, plus *families* addressed as ``"<family>:<arg>"`` whose
    builder receives ``<arg>`` as its first argument (e.g. ``timm:efficientnet_b0``).

    Registration is explicit (a module registers its own builders when imported); no
    star-imports, no entry points.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, Callable[..., Any]] = {}
        self._families: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, *, family: bool = False) -> Callable[[Callable], Callable]:
        """Decorator: register ``fn`` under ``name`` (a family when ``family=True``)."""
        if ":" in name:
            raise ValueError(f"{self.kind} name {name!r} must not contain ':'")

        def deco(fn: Callable) -> Callable:
            table = self._families if family else self._builders
            if name in table:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            table[name] = fn
            return fn

        return deco

    def names(self) -> list[str]:
        """Exact names, sorted."""
        return sorted(self._builders)

    def families(self) -> list[str]:
        """Family prefixes, sorted (each used as ``"<family>:<arg>"``)."""
        return sorted(self._families)

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except UserInputError:
            return False
        return True

    def resolve(self, name: str) -> Callable[..., Any]:
        """The builder for ``name`` (families bound to their argument); ``UserInputError``
        listing what exists when the name is unknown."""
        if name in self._builders:
            return self._builders[name]
        family, sep, arg = str(name).partition(":")
        if sep and family in self._families and arg:
            fn = self._families[family]
            return lambda *a, **kw: fn(arg, *a, **kw)
        known = ", ".join(self.names() + [f"{f}:<name>" for f in self.families()])
        raise UserInputError(f"unknown {self.kind} {name!r} (known: {known})")

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the builder registered for ``name``."""
        return self.resolve(name)(*args, **kwargs)
