"""Kurakin, Goodfellow and Bengio (2016) print-and-photograph sheets: clean and adversarial versions of each image
in a grid, with markers, a QR code and a manifest (cell positions, source, attack, eps, label, digital top-5)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from patchlab.errors import PatchlabError
from patchlab.physical.layout import Page, paper_size, write_pdf
from patchlab.physical.sheets import Cell, SheetManifest, content_rect, frame_page, sheet_id_for
from patchlab.progress import ProgressFn

CAPTION_MM = 4.0
GAP_MM = 3.0
MAX_CELLS = 2000



@dataclass
class KurakinSheet:
    manifest: SheetManifest
    pages: list[Page]
    pdf: bytes

    def save(self, out_pdf: str | Path, manifest_out: str | Path | None = None,
             force: bool = False) -> tuple[Path, Path]:
        """Write <out>.pdf and its manifest <out>.sheet.json atomically; an existing file is replaced only when it
        is an earlier `patchlab sheet` output and `force` is set."""
        from patchlab.artifacts import check_outputs, default_path, write_bytes

        out_pdf = Path(out_pdf)
        man = Path(manifest_out) if manifest_out else default_path(out_pdf, "sheet-manifest")
        check_outputs({out_pdf: "sheet-pdf", man: "sheet-manifest"}, self.manifest.written_by, force)
        write_bytes(out_pdf, self.pdf)
        self.manifest.to_json(man)
        return out_pdf, man


def grid_slots(paper: str, cell_mm: float) -> list[tuple[float, float]]:
    """Top-left corners (mm) of the cells that fit one page's content area, row by row, centred."""
    cx, cy, cw, ch = content_rect(paper_size(paper))
    cols = int((cw + GAP_MM) // (cell_mm + GAP_MM))
    rows = int((ch + GAP_MM) // (cell_mm + CAPTION_MM + GAP_MM))
    if cols < 1 or rows < 1:
        raise PatchlabError(f"cell_mm={cell_mm:g} does not fit the {paper} printable area ({cw:.0f} x {ch:.0f} mm)")
    x0 = cx + (cw - (cols * cell_mm + (cols - 1) * GAP_MM)) / 2
    return [(x0 + c * (cell_mm + GAP_MM), cy + r * (cell_mm + CAPTION_MM + GAP_MM)) for r in range(rows) for c in range(cols)]


def attack_variants(model, images: list, labels: list[int], attacks: list[str] = ("fgsm", "bim", "ll"),
                    eps: list[float] = (2 / 255, 4 / 255, 8 / 255, 16 / 255), batch_size: int = 16,
                    progress: ProgressFn | None = None) -> list[tuple[str, float, torch.Tensor]]:
    """[("clean", 0, x), (attack, eps, adv), ...] at the model input size; images are preprocessed first."""
    from patchlab.attacks import make_attack
    from patchlab.models import preprocess

    if not images:
        raise PatchlabError("give at least one image")
    if len(labels) != len(images):
        raise PatchlabError(f"{len(images)} images but {len(labels)} labels")
    attacks = [a.strip().lower() for a in attacks if a.strip()]
    n_cells = len(images) * (1 + len(attacks) * len(eps))
    if n_cells > MAX_CELLS:
        raise PatchlabError(f"{n_cells} cells is over the {MAX_CELLS}-cell limit; use fewer images, attacks or eps")
    x = torch.stack([preprocess(img, model) for img in images]).to(model.device)
    y = torch.as_tensor(labels, dtype=torch.long, device=model.device)
    variants: list[tuple[str, float, torch.Tensor]] = [("clean", 0.0, x)]
    total, step = len(attacks) * len(eps), 0
    for a in attacks:
        for e in eps:
            advs = [make_attack(a, model, eps=e)(x[s:s + batch_size], y[s:s + batch_size]).adv.detach()
                    for s in range(0, len(x), batch_size)]
            variants.append((a, float(e), torch.cat(advs)))
            step += 1
            if progress:
                progress(step, total, {"attack": a, "eps": round(e * 255, 2)})
    return variants


def build_kurakin_sheet(model, images: list, labels: list[int], names: list[str] | None = None,
                        attacks: list[str] = ("fgsm", "bim", "ll"), eps: list[float] = (2 / 255, 4 / 255, 8 / 255, 16 / 255),
                        paper: str = "a4", cell_mm: float = 90.0, batch_size: int = 16,
                        progress: ProgressFn | None = None,
                        variants: list[tuple[str, float, torch.Tensor]] | None = None) -> KurakinSheet:
    """Attack each image with each method and eps, and lay the clean and adversarial versions out on pages.

    `images` are (3, H, W) tensors in [0, 1] (any size; they are preprocessed to the model input) and `labels` their
    ImageNet ground truth. Every cell records the digital top-5 so photo-eval can compute destruction rates.
    Pass `variants` (from attack_variants) to lay out attacks computed earlier.
    """
    if variants is None:
        variants = attack_variants(model, images, labels, attacks, eps, batch_size, progress)
    attacks = list(dict.fromkeys(a for a, _, _ in variants if a != "clean"))
    eps = sorted({e for a, e, _ in variants if a != "clean"})
    names = names or [f"image{i}" for i in range(len(labels))]
    top5 = {}
    for a, e, v in variants:
        v = v.to(model.device)
        probs = torch.cat([model.predict(v[s:s + 64]) for s in range(0, len(v), 64)])
        top5[(a, e)] = probs.topk(5, dim=-1).indices.cpu().tolist()
    model_name = getattr(model, "name", None)
    sid = sheet_id_for(model_name, names, list(map(int, labels)), attacks, list(eps), paper, cell_mm,
                       float(variants[0][2].float().mean()))
    slots = grid_slots(paper, cell_mm)
    cells, pixels = [], []
    k = 0
    for i in range(len(labels)):
        for a, e, v in variants:
            page, slot = divmod(k, len(slots))
            sx, sy = slots[slot]
            meta = {"source": names[i], "source_index": i, "attack": a, "eps": e, "label": int(labels[i]),
                    "label_name": model.labels[int(labels[i])] if hasattr(model, "labels") else None,
                    "digital_top5": top5[(a, e)][i]}
            cells.append(Cell(id=f"c{k}", page=page, rect_mm=(sx, sy, cell_mm, cell_mm), kind="image", meta=meta))
            pixels.append((v[i].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()))
            k += 1
    n_pages = 1 + cells[-1].page
    meta = {"model": model_name, "attacks": attacks, "eps": list(map(float, eps)), "cell_mm": cell_mm,
            "input_size": int(getattr(model, "input_size", variants[0][2].shape[-1])), "n_images": len(labels)}
    manifest = SheetManifest(kind="kurakin", sheet_id=sid, paper=paper.lower(), n_pages=n_pages, cells=cells, meta=meta)
    pages = kurakin_pages(manifest, pixels)
    return KurakinSheet(manifest=manifest, pages=pages, pdf=write_pdf(pages, title=f"patchlab Kurakin sheet {sid}",
                                                                              written_by="patchlab sheet"))


def kurakin_pages(manifest: SheetManifest, pixels: list[np.ndarray]) -> list[Page]:
    pages = []
    meta = manifest.meta
    for p in range(manifest.n_pages):
        lines = [f"patchlab Kurakin sheet {manifest.sheet_id}  page {p + 1}/{manifest.n_pages}",
                 f"model {meta.get('model')}; attacks {', '.join(meta.get('attacks', []))}; "
                 f"eps {', '.join(f'{e * 255:g}' for e in meta.get('eps', []))} /255",
                 "photograph flat, all 4 corner markers in view; score with:",
                 "patchlab photo-eval PHOTO --manifest SHEET.sheet.json"]
        page = frame_page(manifest.paper, {"kind": "kurakin", "sheet": manifest.sheet_id, "paper": manifest.paper,
                                           "page": p, "pages": manifest.n_pages, "model": meta.get("model")}, lines)
        for cell, px in zip(manifest.cells, pixels):
            if cell.page != p:
                continue
            x, y, w, h = cell.rect_mm
            page.add_image(x, y, w, h, px, name=cell.id)
            tag = "clean" if cell.meta["attack"] == "clean" else f"{cell.meta['attack']} {cell.meta['eps'] * 255:g}"
            page.add_text(x, y + h + 3.0, f"#{cell.meta['source_index']} {tag}", size_pt=6)
        pages.append(page)
    return pages


def load_labelled_images(paths: list[str | Path]) -> tuple[list[torch.Tensor], list[int], list[str]]:
    """Read image files whose names start with an ImageNet wnid ('n01440764_tench.jpg') -> images, labels, names."""
    from patchlab.data import imagenet_classes, read_image

    classes = imagenet_classes()
    wnid_to_idx = {w: i for i, w in enumerate(classes.wnids)}
    images, labels, names = [], [], []
    for p in paths:
        p = Path(p)
        wnid = p.stem.split("_", 1)[0]
        if wnid not in wnid_to_idx:
            raise PatchlabError(f"{p}: cannot tell the ground truth; name files '<wnid>_<name>.jpg' (e.g. n01440764_tench.jpg)")
        images.append(read_image(p))
        labels.append(wnid_to_idx[wnid])
        names.append(p.name)
    return images, labels, names
