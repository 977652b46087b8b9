"""The ImageNet class index (shipped with patchlab) and class lookup by index, wnid or name."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from patchlab.errors import PatchlabError
from patchlab.registry import did_you_mean


@dataclass(frozen=True)
class ClassIndex:
    wnids: tuple[str, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def lookup(self, query: int | str) -> int:
        """Class index from an int, a digit string, a wnid or a name (case-insensitive, '_' = ' ')."""
        return lookup_class(query, self.names, self.wnids)


@lru_cache(maxsize=1)
def imagenet_classes() -> ClassIndex:
    """The 1000 ILSVRC-2012 classes in the standard (sorted-wnid) order."""
    text = resources.files("patchlab.data").joinpath("resources/imagenet_classes.tsv").read_text()
    wnids, names = [], []
    for line in text.splitlines()[1:]:
        if line.strip():
            _, wnid, name = line.split("\t")
            wnids.append(wnid)
            names.append(name)
    return ClassIndex(tuple(wnids), tuple(names))


def _norm(s: str) -> str:
    return " ".join(s.replace("_", " ").replace("-", " ").lower().split())


def lookup_class(query: int | str, names: list[str] | tuple[str, ...], wnids: tuple[str, ...] | None = None) -> int:
    """Resolve a class given as an index, wnid or name; one-line error with a suggestion if not found."""
    n = len(names)
    if isinstance(query, int) or (isinstance(query, str) and query.strip().lstrip("-").isdigit()):
        idx = int(query)
        if not 0 <= idx < n:
            raise PatchlabError(f"class index {idx} is out of range (0..{n - 1})")
        return idx
    q = str(query).strip()
    if wnids and q in wnids:
        return wnids.index(q)
    nq = _norm(q)
    normed = [_norm(name) for name in names]
    if nq in normed:
        return normed.index(nq)
    hint = did_you_mean(nq, normed, shown=lambda close: names[normed.index(close)])
    raise PatchlabError(f"unknown class name '{query}'{hint}")
