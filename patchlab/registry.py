"""Named things of one kind (attacks, models, EOT presets, digit models, demos; defenses and privacy mechanisms
next): register, get with a "did you mean" suggestion, list. In the spirit of timm's `_registry.py`.

    DEFENSES = Registry("defense")

    @DEFENSES.register("jpeg", title="JPEG compression", aliases=("jpeg-compression",))
    class JpegDefense: ...

    DEFENSES.get("jpg")      # PatchlabError: unknown defense 'jpg'; did you mean 'jpeg'? (choose from jpeg)
    list(DEFENSES)           # canonical names, in registration order
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from patchlab.errors import PatchlabError

T = TypeVar("T")


def did_you_mean(query: str, choices: Iterable[str], shown: Callable[[str], str] | None = None,
                 cutoff: float = 0.6) -> str:
    """'; did you mean 'x'?' for the closest choice (shown as `shown(choice)`), or '' when none is close."""
    close = difflib.get_close_matches(query, list(choices), n=1, cutoff=cutoff)
    if not close:
        return ""
    return f"; did you mean '{shown(close[0]) if shown else close[0]}'?"


def check_known(names: Iterable[str], known: Iterable[str], kind: str) -> None:
    """Raise "unknown {kind} 'x'; did you mean 'y'?" for the first of `names` (sorted) that is not `known`."""
    known = list(known)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise PatchlabError(f"unknown {kind} '{unknown[0]}'{did_you_mean(unknown[0], known)}")


def _key(name: str) -> str:
    return str(name).strip().lower()


class Registry(Generic[T]):
    """Canonical names (case-insensitive) and aliases -> objects, each with a display title."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._titles: dict[str, str] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, title: str | None = None,
                 aliases: Iterable[str] = ()) -> T | Callable[[T], T]:
        """Add `obj` under `name` (and `aliases`); without `obj`, a decorator that adds what it decorates."""
        if obj is None:
            return lambda target: self.register(name, target, title=title, aliases=aliases)
        key = _key(name)
        if key in self._items or key in self._aliases:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[key] = obj
        self._titles[key] = title or name
        for alias in aliases:
            self._aliases[_key(alias)] = key
        return obj

    def resolve(self, name: str) -> str:
        """The canonical name of `name` or of an alias; unknown names raise a one-line PatchlabError with a hint."""
        key = _key(name)
        key = self._aliases.get(key, key)
        if key not in self._items:
            hint = did_you_mean(key, [*self._items, *self._aliases])
            raise PatchlabError(f"unknown {self.kind} '{name}'{hint} (choose from {', '.join(self._items)})")
        return key

    def get(self, name: str) -> T:
        """The object registered as `name` (or an alias of it); raises like `resolve`."""
        return self._items[self.resolve(name)]

    def title(self, name: str) -> str:
        """The display title (the name itself when none was given)."""
        return self._titles[self.resolve(name)]

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def values(self) -> list[T]:
        return list(self._items.values())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        key = _key(name) if isinstance(name, str) else None
        return key is not None and (key in self._items or key in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"
