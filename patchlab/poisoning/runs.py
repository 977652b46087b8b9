"""Where poisoning results go: JSONL journals that a rerun resumes from, and the `--out` run folder of
`patchlab poison koh-liang|feature-collision` (run.json with the settings, journals, poison PNGs, figures).

The rules are the project's (docs/outputs.md): a run folder is new, empty, or this command's own with the same
settings (then it resumes); other settings are refused unless `force=True`, which starts it over and removes only
this command's own files; a PNG is never written over a file of another kind or command.
"""

from __future__ import annotations

import json
from pathlib import Path

from patchlab.artifacts import (OutputExists, append_jsonl, check_output, identify, read_json, read_jsonl,
                                repair_jsonl_tail, write_json)
from patchlab.errors import PatchlabError

JOURNAL_PREFIXES = ("koh-liang-", "feature-collision-")  # the journals a run folder holds (see the CLI's names)
OWN_KINDS = ("poison", "poison-figure")


def read_journal(log: str | Path | None, key: dict) -> list[dict]:
    """The results already in journal `log` for runs with this `key` (settings); a torn last line is cut first."""
    if log is None or not Path(log).is_file():
        return []
    repair_jsonl_tail(log)
    key = json.loads(json.dumps(key, default=float))  # tuples as lists, as they were written
    return [rec["result"] for rec in read_jsonl(log) if rec.get("key") == key]


def append_journal(log: str | Path | None, key: dict, result: dict) -> None:
    if log is not None:
        append_jsonl(log, [{"key": key, "result": result}])


def prepare_run_folder(out: str | Path, writer: str, settings: dict, force: bool = False) -> bool:
    """Make `out` ready for `writer`'s run with `settings`. Returns True when it resumes an earlier run of the same
    settings. Another command's folder, a folder of other files, or (without `force`) other settings are refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PatchlabError(f"{out} is a file, not a folder for the poisoning results")
    run_file = out / "run.json"
    wanted = json.loads(json.dumps(settings, default=float))
    found = identify(out) if out.is_dir() else None
    if found is not None and found.kind == "poison-run":
        if found.written_by != writer:
            raise OutputExists(f"{out} holds a run of `{found.written_by}`, not of `{writer}`; choose another "
                               "folder", out, found)
        previous = {k: v for k, v in (read_json(run_file) or {}).items() if k not in ("artifact", "written_by")}
        if previous == wanted:
            return True
        if not force:
            raise OutputExists(f"{out} holds a `{writer}` run with other settings; not overwritten: <force> starts "
                               "it over, or choose another folder", out, found, True)
        _remove_own_files(out, writer)
    elif out.is_dir() and any(out.iterdir()):
        what = f"a {found.what} written by `{found.written_by}`" if found else "other files"
        raise OutputExists(f"{out} holds {what}, not a `{writer}` run; choose a new or empty folder", out, found)
    write_json(run_file, wanted, "poison-settings", writer)
    return False


def _remove_own_files(out: Path, writer: str) -> None:
    """Starting over: this command's journals, poisons and figures go; nothing else is touched."""
    for path in sorted(out.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".jsonl" and path.name.startswith(JOURNAL_PREFIXES):
            path.unlink()
        elif path.suffix == ".png":
            found = identify(path)
            if found is not None and found.kind in OWN_KINDS and found.written_by == writer:
                path.unlink()


def save_png(image, path: Path, kind: str, writer: str) -> Path:
    """A poison PNG, never over another command's file (this command's own earlier file is replaced)."""
    from patchlab.data import save_image

    check_output(path, kind, writer, force=True)
    return save_image(image, path, kind=kind, written_by=writer)


def save_fig(fig, path: Path, kind: str, writer: str) -> Path:
    from patchlab.artifacts import save_figure

    check_output(path, kind, writer, force=True)
    return save_figure(fig, path, kind, writer, dpi=100, bbox_inches="tight")


def safe_name(text: str) -> str:
    """A view's name as a file-name part ('n02085620_Chihuahua#3' -> 'n02085620_Chihuahua-3')."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
