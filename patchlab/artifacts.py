"""Writing outputs safely: every file lands whole or not at all.

`atomic_path(path)` yields a temporary sibling to write to and renames it into place on success, so a kill at any
moment leaves either the previous file or the new one, never a truncated one (rename is atomic on POSIX and on
Windows within one folder). `save_torch` and `write_text` are the two common cases.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix, so writers that sniff it keep working); renamed over `path`
    when the block exits normally, deleted when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def save_torch(obj, path: str | Path) -> Path:
    """torch.save through a temporary file. Keep `obj` to tensors, numbers, strings, lists and dicts so that it
    loads back with `torch.load(..., weights_only=True)`."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
