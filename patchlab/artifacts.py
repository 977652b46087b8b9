"""Writing outputs safely: every file lands whole or not at all, and no command overwrites another's file.

- `atomic_path(path)` yields a temporary sibling to write to and renames it into place on success, so a kill at any
  moment leaves either the previous file or the new one, never a truncated one (rename is atomic on POSIX and on
  Windows within one folder). `write_bytes`, `write_text`, `write_json` and `save_torch` are the common cases.
- Every kind of output has a registered `Kind` with a documented suffix (`KINDS`; the table is docs/outputs.md).
  Each output carries a tag naming its kind and the command that wrote it: JSON files have `"artifact"` and
  `"written_by"` keys, PNGs a `patchlab` text chunk, PDFs their Keywords, JPEGs a comment; a folder output is known
  by the JSON file inside it. `identify(path)` reads the tag back, and recognises older versions' outputs by content.
- `check_outputs({path: kind}, written_by, force)` is the guard a command calls before it writes anything: a file of
  another kind, or one it cannot identify, is refused with one line naming it and what wrote it; the command's own
  earlier output is replaced only with `force`.
- JSONL journals (camera frames, attack rows) are appended a line at a time: a kill tears at most the last line,
  which `read_jsonl` skips and `repair_jsonl_tail` cuts before the next append.
- `next_run_folder(parent)` gives each run a fresh numbered folder (`run-001`, `run-002`, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from patchlab.errors import PatchlabError


# -- atomic writes -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix, so writers that sniff it keep working); renamed over `path`
    when the block exits normally, deleted when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_parts(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


STALE_PART_SECONDS = 3600.0  # a temporary this old belongs to a killed writer, not to one still writing


def _sweep_stale_parts(path: Path) -> None:
    """Delete the temporaries that killed writers of `path` left behind (SIGKILL skips the cleanup above)."""
    import glob
    import time

    cutoff = time.time() - STALE_PART_SECONDS
    for part in path.parent.glob(f".{glob.escape(path.stem)}.*.part{glob.escape(path.suffix)}"):
        with contextlib.suppress(OSError):
            if part.stat().st_mtime < cutoff:
                part.unlink()


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


def load_keyed_checkpoint(path: str | Path | None, fmt: str, key: str, what: str | None = None) -> dict | None:
    """A resumable run's checkpoint (weights_only), or None when there is none. One written by another kind of run
    (its "format" is not `fmt`) or with other settings (its "key" is not `key`) is refused with a one-line error."""
    import torch

    if path is None or not Path(path).is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise PatchlabError(f"{path}: not a {what or fmt} checkpoint")
    if state.get("key") != key:
        raise PatchlabError(f"{path}: was written with other settings or data; give another checkpoint= or delete it "
                            "to start over")
    return state


def save_figure(fig, path: str | Path, kind: str | None = None, written_by: str | None = None,
                **savefig_kwargs) -> Path:
    """A matplotlib Figure saved as PNG through a temporary file, tagged with `kind` (a PNG text chunk)."""
    meta = {"patchlab": json.dumps(tag(kind, written_by))} if kind else None
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=meta, **savefig_kwargs)
    return Path(path)


# -- kinds ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """One kind of output: its registry name, the suffix its default name ends with, what it is, which command
    writes it, and where its tag lives (json, png, pdf, jpeg, safetensors metadata, folder, or none for formats
    without room for one; checkpoints are known by their own "format" field)."""

    name: str
    suffix: str
    what: str
    writer: str
    tag: str = "json"


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    """Add a kind (topic packages register their own outputs here); a name may be registered once."""
    if kind.name in KINDS and KINDS[kind.name] != kind:
        raise ValueError(f"artifact kind {kind.name!r} is already registered differently")
    KINDS[kind.name] = kind
    return kind


for _k in (
    Kind("patch", ".png", "patch image (RGBA PNG)", "patchlab patch train", "png"),
    Kind("patch-sidecar", ".patch.json", "patch sidecar (settings, history, training images)", "patchlab patch train"),
    Kind("patch-checkpoint", ".ckpt.pt", "patch training checkpoint", "patchlab patch train", "none"),
    Kind("patch-eval", ".eval.json", "patch evaluation", "patchlab patch eval"),
    Kind("patch-eval-plot", ".eval.png", "patch evaluation plot", "patchlab patch eval", "png"),
    Kind("sheet-pdf", ".pdf", "printable sheet (PDF)", "patchlab print", "pdf"),
    Kind("sheet-manifest", ".sheet.json", "sheet manifest", "patchlab print"),
    Kind("print-png", ".print.png", "patch PNG at print resolution", "patchlab print", "png"),
    Kind("photo", ".jpg", "simulated photo", "patchlab simulate-photo", "jpeg"),
    Kind("photo-truth", ".truth.json", "simulated photo's ground truth", "patchlab simulate-photo"),
    Kind("annotated-photo", ".png", "annotated photo", "patchlab photo-eval", "png"),
    Kind("colour-model", ".colour.json", "colour model", "patchlab calibrate fit"),
    Kind("perturbation", ".png", "perturbed photo", "patchlab perturb", "png"),
    Kind("perturbation-sidecar", ".perturb.json", "perturbation sidecar", "patchlab perturb"),
    Kind("attack-run", "/", "attack output folder (run.json, results.jsonl, PNGs)", "patchlab attack", "folder"),
    Kind("attack-settings", "run.json", "attack run settings", "patchlab attack"),
    Kind("adversarial", ".png", "adversarial image", "patchlab attack", "png"),
    Kind("recording", "/run-NNN/", "camera recording (meta.json, frames.jsonl, summary.json)", "patchlab camera",
         "folder"),
    Kind("recording-meta", "meta.json", "camera recording metadata", "patchlab camera"),
    Kind("recording-summary", "summary.json", "camera recording summary", "patchlab camera"),
    Kind("recording-plot", "summary.png", "camera recording summary plot", "patchlab camera", "png"),
    Kind("recording-report", "report.json", "camera report", "patchlab camera-report"),
    Kind("recording-report-plot", "report.png", "camera report plot", "patchlab camera-report", "png"),
    Kind("video", ".avi", "video", "patchlab camera-scene", "none"),
    Kind("eot-preview", ".png", "EOT preview grid", "patchlab eot preview", "png"),
    Kind("figure", ".png", "figure", "patchlab attack-demo", "png"),
    Kind("transfer-result", ".transfer.json", "transfer/theft result", "patchlab transfer"),
    Kind("transfer-figure", ".transfer.png", "transfer/theft figure", "patchlab transfer", "png"),
    Kind("influence-figure", ".influence.png", "influence figure (test image, most helpful and harmful training "
         "images)", "patchlab poison influence", "png"),
    Kind("influence-loo-figure", ".loo.png", "influence vs leave-one-out plot", "patchlab poison influence", "png"),
    Kind("poison-run", "/", "poisoning output folder (run.json, results JSONL, poison PNGs, figures)",
         "patchlab poison koh-liang", "folder"),
    Kind("poison-settings", "run.json", "poisoning run settings", "patchlab poison koh-liang"),
    Kind("poison", ".poison.png", "poisoned training image", "patchlab poison koh-liang", "png"),
    Kind("poison-figure", ".figure.png", "poisoning figure (original, poison, difference, predictions)",
         "patchlab poison koh-liang", "png"),
    Kind("bench-results", ".bench.json", "benchmark results (every target)", "patchlab bench"),
    Kind("gpu-check", ".gpu.json", "GPU check results", "patchlab bench gpu"),
    Kind("defense-model", ".safetensors", "model trained by a defense (safetensors)", "patchlab defend train",
         "safetensors"),
    Kind("defense-plot", ".png", "defense evaluation plot", "patchlab defend", "png"),
    # privacy (patchlab privacy dpsgd|pate|mia|bench): fixed names inside the --out folder, plus models and state
    Kind("digits-model", ".digits.safetensors", "digits model (safetensors)", "patchlab", "safetensors"),
    Kind("trained-model-job", ".job.json", "trained model's job and key (reused by reruns)", "patchlab privacy"),
    Kind("digits-fit-checkpoint", ".fit.pt", "digits model training checkpoint", "patchlab", "none"),
    Kind("dpsgd-checkpoint", ".dpsgd.pt", "DP-SGD checkpoint (model, optimiser, accountant)", "patchlab privacy dpsgd",
         "none"),
    Kind("dpsgd-results", "dpsgd.json", "DP-SGD results", "patchlab privacy dpsgd"),
    Kind("dpsgd-plot", "dpsgd.png", "DP-SGD accuracy against epsilon plot", "patchlab privacy dpsgd", "png"),
    Kind("dpsgd-history-plot", ".history.png", "DP-SGD epsilon and loss per epoch plot", "patchlab privacy dpsgd",
         "png"),
    Kind("pate-results", "pate.json", "PATE results", "patchlab privacy pate"),
    Kind("pate-plot", "pate.png", "PATE privacy plot", "patchlab privacy pate", "png"),
    Kind("mia-results", "mia.json", "membership inference results", "patchlab privacy mia"),
    Kind("mia-roc-plot", "roc.png", "membership inference ROC plot", "patchlab privacy mia", "png"),
    Kind("privacy-bench-cell", ".privacy-cell.json", "privacy benchmark cell (reused by reruns)",
         "patchlab privacy bench"),
    Kind("scatter-features", ".features.pt", "cached ScatterNet features", "patchlab privacy bench", "none"),
):
    register_kind(_k)


def tag(kind: str, written_by: str | None = None) -> dict:
    """The identification every output of `kind` carries: {"artifact": kind, "written_by": command}."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    return {"artifact": kind, "written_by": written_by or KINDS[kind].writer}


def default_path(stem_path: str | Path, kind: str) -> Path:
    """`<folder>/<stem><suffix>` for a kind: default_path("out/banana.png", "patch-sidecar") -> out/banana.patch.json."""
    p = Path(stem_path)
    return p.with_name(p.stem + KINDS[kind].suffix)


# -- tagged formats -------------------------------------------------------------------------------------------------------
def write_json(path: str | Path, obj: dict, kind: str | None = None, written_by: str | None = None,
               indent: int | None = 2) -> Path:
    """A JSON object written atomically; with `kind`, its tag keys come first."""
    data = {**tag(kind, written_by), **{k: v for k, v in obj.items() if k not in ("artifact", "written_by")}} \
        if kind else obj
    return write_text(path, json.dumps(data, indent=indent, default=float) + "\n")


def png_info(kind: str | None, written_by: str | None = None):
    """PIL PngInfo carrying the tag (None without a kind)."""
    if kind is None:
        return None
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("patchlab", json.dumps(tag(kind, written_by)))
    return info


def tag_png_bytes(data: bytes, kind: str, written_by: str | None = None) -> bytes:
    """Insert the tag as a tEXt chunk right after IHDR of an encoded PNG (pixels untouched)."""
    import zlib

    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise PatchlabError("not PNG data")
    body = b"patchlab\x00" + json.dumps(tag(kind, written_by)).encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    ihdr_end = 8 + 8 + struct.unpack(">I", data[8:12])[0] + 4
    return data[:ihdr_end] + chunk + data[ihdr_end:]


def tag_jpeg_bytes(data: bytes, kind: str, written_by: str | None = None) -> bytes:
    """Insert the tag as a COM segment after the JFIF/EXIF header segments of an encoded JPEG."""
    if not data.startswith(b"\xff\xd8"):
        raise PatchlabError("not JPEG data")
    text = b"patchlab " + json.dumps(tag(kind, written_by)).encode()
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] in (0xE0, 0xE1):  # keep APP0/APP1 first
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    return data[:pos] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[pos:]


def _jpeg_comments(head: bytes) -> list[bytes]:
    out, pos = [], 2
    while pos + 4 <= len(head) and head[pos] == 0xFF:
        marker = head[pos + 1]
        if marker == 0xDA:  # start of scan: no more header segments
            break
        length = struct.unpack(">H", head[pos + 2:pos + 4])[0]
        if marker == 0xFE:
            out.append(head[pos + 4:pos + 2 + length])
        pos += 2 + length
    return out


# -- identification -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    kind: str
    written_by: str
    legacy: bool = False   # recognised by content (an older patchlab wrote it without a tag)

    @property
    def what(self) -> str:
        return KINDS[self.kind].what if self.kind in KINDS else self.kind


def _tag_identity(data) -> Identity | None:
    if isinstance(data, dict) and isinstance(data.get("artifact"), str) and isinstance(data.get("written_by"), str):
        return Identity(data["artifact"], data["written_by"])
    return None


SHEET_WRITERS = {"patch": "patchlab print", "kurakin": "patchlab sheet", "chart": "patchlab calibrate chart"}


def _legacy_json(d: dict) -> Identity | None:
    """What older patchlab versions wrote, recognised by the keys each format always had."""
    def old(kind: str, writer: str | None = None) -> Identity:
        return Identity(kind, writer or KINDS[kind].writer, legacy=True)

    if "sheet_id" in d and "cells" in d:
        return old("sheet-manifest", SHEET_WRITERS.get(d.get("kind"), "patchlab print"))
    if d.get("kind") == "adversarial_patch" or ("train_images" in d and "config" in d):
        return old("patch-sidecar")
    if "H_mm_to_px" in d:
        return old("photo-truth")
    if "original_success_rate" in d and "linf" in d:
        return old("perturbation-sidecar")
    if isinstance(d.get("models"), dict) and "target_name" in d and "preset" in d:
        return old("patch-eval")
    if d.get("kind") in ("affine", "root_polynomial", "per_channel") and "matrix" in d:
        return old("colour-model")
    if {"attack", "folder", "model"} <= set(d):
        return old("attack-settings")
    if "started" in d and "format" in d:
        return old("recording-meta")
    if "recording" in d and "attack" in d:
        return old("recording-summary")
    return None


MAX_JSON_BYTES = 64 * 2**20


def read_json(path: str | Path) -> dict | list | None:
    """A JSON file's content, or None when it is not JSON (or too large to be one of ours)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def load_json(path: str | Path, what: str = "JSON file") -> dict:
    """A JSON object from a file the user named; a one-line PatchlabError when it is missing, not JSON, or not an
    object (`what` names the file in the message, e.g. "manifest file")."""
    path = Path(path)
    if not path.is_file():
        raise PatchlabError(f"{path}: no such {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PatchlabError(f"{path}: {what} is not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise PatchlabError(f"{path}: {what} is not a JSON object")
    return data


def _identify_file(path: Path) -> Identity | None:
    try:
        with path.open("rb") as fh:
            head = fh.read(65536)
    except OSError:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        try:
            from PIL import Image

            with Image.open(path) as im:
                text = im.info.get("patchlab")
        except Exception:  # noqa: BLE001 - a damaged PNG is simply not identified
            text = None
        if text:
            try:
                return _tag_identity(json.loads(text))
            except ValueError:
                return None
        return _legacy_image(path)
    if head.startswith(b"\xff\xd8"):
        for comment in _jpeg_comments(head):
            if comment.startswith(b"patchlab "):
                try:
                    return _tag_identity(json.loads(comment[9:].decode()))
                except ValueError:
                    return None
        return _legacy_image(path)
    if head.startswith(b"%PDF"):
        return _identify_pdf(path)
    if path.suffix == ".safetensors":
        return _identify_safetensors(head)
    if head.startswith(b"PK\x03\x04") and path.suffix == ".pt":
        return _identify_torch(path)
    if head.lstrip()[:1] == b"{":
        data = read_json(path)
        if isinstance(data, dict):
            return _tag_identity(data) or _legacy_json(data)
    return None


def _legacy_image(path: Path) -> Identity | None:
    """An untagged PNG/JPEG from an older version, known by the sidecar beside it."""
    for side in (default_path(path, "patch-sidecar"), path.with_suffix(".json"), default_path(path, "photo-truth"),
                 default_path(path, "perturbation-sidecar")):
        if side.is_file() and side != path:
            found = _identify_file(side)
            pairs = {"patch-sidecar": "patch", "photo-truth": "photo", "perturbation-sidecar": "perturbation",
                     "patch-eval": "patch-eval-plot"}
            if found is not None and found.kind in pairs:
                kind = pairs[found.kind]
                if (kind == "photo") == (path.suffix.lower() in (".jpg", ".jpeg")):
                    return Identity(kind, found.written_by, legacy=True)
    return None


def _identify_pdf(path: Path) -> Identity | None:
    try:
        from pypdf import PdfReader

        info = PdfReader(str(path)).metadata or {}
    except Exception:  # noqa: BLE001 - an unreadable PDF is simply not identified
        return None
    keywords = str(info.get("/Keywords") or "")
    if keywords.startswith("{"):
        try:
            found = _tag_identity(json.loads(keywords))
        except ValueError:
            found = None
        if found:
            return found
    title = str(info.get("/Title") or "")
    for prefix, writer in (("patchlab patch sheet", "patchlab print"), ("patchlab Kurakin sheet", "patchlab sheet"),
                           ("patchlab colour chart", "patchlab calibrate chart")):
        if title.startswith(prefix):
            return Identity("sheet-pdf", writer, legacy=True)
    return None


def safetensors_tag(kind: str, written_by: str | None = None) -> dict:
    """The metadata entry that tags a safetensors file (pass it in `save_file(..., metadata=)`)."""
    return {"artifact": json.dumps(tag(kind, written_by))}


def _identify_safetensors(head: bytes) -> Identity | None:
    """A safetensors file starts with its header's length (u64, little-endian) and the JSON header itself."""
    if len(head) < 8:
        return None
    size = struct.unpack("<Q", head[:8])[0]
    try:
        meta = json.loads(head[8:8 + size]).get("__metadata__") or {}
        if "artifact" not in meta and "patchlab" in meta:  # a digits model saved before models were tagged
            return Identity("digits-model", KINDS["digits-model"].writer, legacy=True)
        return _tag_identity(json.loads(meta["artifact"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _identify_torch(path: Path) -> Identity | None:
    try:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a checkpoint we can read safely
        return None
    fmt = str(state.get("format", "")) if isinstance(state, dict) else ""
    for prefix, kind in TORCH_FORMATS.items():
        if fmt.startswith(prefix):
            return Identity(kind, str(state.get("written_by") or KINDS[kind].writer))
    return None


# checkpoint "format" prefixes -> kinds (the checkpoints' own format fields identify them)
TORCH_FORMATS = {"patchlab-patch-checkpoint": "patch-checkpoint", "patchlab-dpsgd": "dpsgd-checkpoint",
                 "patchlab-digits-fit": "digits-fit-checkpoint", "patchlab-scatter-features": "scatter-features"}


# run folders known by the settings file `run.json` inside them: its kind -> the folder's kind
RUN_FOLDERS = {"attack-settings": "attack-run", "poison-settings": "poison-run"}


def identify(path: str | Path) -> Identity | None:
    """What the file or folder at `path` is and which command wrote it; None when patchlab cannot tell."""
    path = Path(path)
    if path.is_dir():
        found = identify(path / "run.json") if (path / "run.json").is_file() else None
        if found is not None and found.kind in RUN_FOLDERS:
            return Identity(RUN_FOLDERS[found.kind], found.written_by, found.legacy)
        found = identify(path / "meta.json") if (path / "meta.json").is_file() else None
        if found is not None and found.kind == "recording-meta":
            return Identity("recording", found.written_by, found.legacy)
        return None
    if not path.is_file():
        return None
    return _identify_file(path)


# -- the guard -----------------------------------------------------------------------------------------------------------
class OutputExists(PatchlabError):
    """An output path is taken: by another kind of file, by a file patchlab cannot identify, or by this command's
    own earlier output (`same` is True; force replaces it). The message names options as `<force>`-style slots,
    shown as the library's parameters (`force=True`; the CLI shows its flags, see PatchlabError.cli_message)."""

    def __init__(self, template: str, path: Path, found: Identity | None = None, same: bool = False):
        self.path, self.found, self.same = Path(path), found, same
        super().__init__(re.sub(r"<(\w+)>", r"\1=True", template))


def check_output(path: str | Path, kind: str, written_by: str | None = None, force: bool = False) -> None:
    """May `written_by` write a `kind` at `path`? Raises OutputExists (one line) when not."""
    check_outputs({path: kind}, written_by, force)


def check_outputs(outputs: Mapping[str | Path, str], written_by: str | None = None, force: bool = False) -> None:
    """Check every output of one command before it writes any: {path: kind}. A missing path is free; the command's
    own earlier output (same kind, same writer) is replaced only with `force`; anything else is refused."""
    seen: dict[Path, Path] = {}
    for raw, kind in outputs.items():
        path = Path(raw)
        key = path.resolve()
        if key in seen:
            raise PatchlabError(f"{seen[key]} and {path} are the same file; give each output its own name")
        seen[key] = path
        want = KINDS[kind]
        writer = written_by or want.writer
        if not path.exists() and not path.is_symlink():
            continue
        if want.tag != "folder" and path.is_dir():
            raise OutputExists(f"{path} is a folder; a {want.what} needs a file name", path)
        found = identify(path)
        if found is None:
            if want.tag == "none" and force:
                continue  # a format with no room for a tag (videos): force is the user's word for it
            raise OutputExists(f"{path} exists and patchlab cannot tell what wrote it; refusing to write the "
                               f"{want.what} over it: choose another output name or move it away"
                               + (" (or <force> replaces it)" if want.tag == "none" else ""), path)
        if found.kind == kind and found.written_by == writer:
            if force:
                continue
            raise OutputExists(f"{path} holds a {want.what} from an earlier `{writer}` run; not overwritten: "
                               "<force> replaces it, or choose another output name", path, found, True)
        if found.kind == kind:
            raise OutputExists(f"{path} is a {found.what} written by `{found.written_by}`, not by `{writer}`; "
                               "refusing to overwrite it: choose another output name", path, found)
        raise OutputExists(f"{path} is a {found.what} written by `{found.written_by}`; refusing to write the "
                           f"{want.what} over it: choose another output name", path, found)


# -- JSONL journals -------------------------------------------------------------------------------------------------------
def repair_jsonl_tail(path: str | Path) -> int:
    """Cut a torn last line (no newline: the writer was killed mid-line) so appends start on a fresh line. Returns
    the number of bytes cut."""
    path = Path(path)
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        block = 1 << 16
        pos = size
        while pos > 0:  # find the last newline
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        else:
            keep = 0
        fh.truncate(keep)
    return size - keep


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Append rows as JSON lines, flushed and synced (each complete line survives a kill)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, separators=(",", ":"), default=float) + "\n" for r in rows)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL journal; a torn last line (a kill mid-write) is skipped, a bad line elsewhere is an error."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n < len(lines):
                raise PatchlabError(f"{path}:{n}: not a JSON line") from None
    return rows


# -- run folders ----------------------------------------------------------------------------------------------------------
RUN_RE = re.compile(r"^run-(\d{3,})$")


def run_folders(parent: str | Path) -> list[Path]:
    """The numbered run folders inside `parent`, in order."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    runs = [(int(m.group(1)), p) for p in parent.iterdir() if p.is_dir() and (m := RUN_RE.match(p.name))]
    return [p for _, p in sorted(runs)]


def next_run_folder(parent: str | Path) -> Path:
    """Create and return a fresh `parent/run-NNN` (one past the highest; safe against a concurrent run)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    runs = run_folders(parent)
    n = int(RUN_RE.match(runs[-1].name).group(1)) + 1 if runs else 1
    while True:
        folder = parent / f"run-{n:03d}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            n += 1


def latest_run_folder(parent: str | Path) -> Path | None:
    runs = run_folders(parent)
    return runs[-1] if runs else None


def content_stem(stem: str, data: bytes | str) -> str:
    """`<stem>-<hash of data>` with the stem made safe for a file name: names that only the same bytes share."""
    import hashlib

    digest = hashlib.sha1(data.encode() if isinstance(data, str) else data).hexdigest()[:8]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "patchlab"
    return f"{safe}-{digest}"


def download_name(stem: str, kind: str, data: bytes | str) -> str:
    """A file name for a browser download that no other content can share: `<stem>-<content hash><suffix>`."""
    return content_stem(stem, data) + KINDS[kind].suffix
