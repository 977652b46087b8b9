"""`patchlab print`, `sheet`, `photo-eval`, `simulate-photo` and `calibrate chart|fit`: paper and back."""

from __future__ import annotations

from pathlib import Path

import typer

from patchlab.cli._common import DeviceOpt, ForceOpt, JsonOpt, add_group, print_json, rich_progress
from patchlab.cli._flags import in_cli_words
from patchlab.errors import PatchlabError


def _floats(text: str | None, name: str) -> list[float] | None:
    if text is None or not str(text).strip():
        return None
    try:
        return [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise PatchlabError(f"{name} must be comma-separated numbers such as 50,100,150, got {text!r}") from None


def _save_rgb(rgb, path: Path) -> Path:
    from patchlab.data import save_image

    return save_image(rgb, path, kind="annotated-photo", written_by="patchlab photo-eval")


def format_destruction_table(summary: dict) -> str:
    """A Markdown table of destruction rates by method (rows) and eps (columns), like Kurakin's Table."""
    rows = [r for r in summary["table"] if r["attack"] != "clean"]
    eps_values = sorted({r["eps_255"] for r in rows}, reverse=True)
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    lines = ["| method | " + " | ".join(f"eps={e:g}" for e in eps_values) + " |",
             "|---|" + "---|" * len(eps_values)]
    for a in attacks:
        cells = []
        for e in eps_values:
            r = next((r for r in rows if r["attack"] == a and r["eps_255"] == e), None)
            if r is None:
                cells.append("")
                continue
            t1 = "n/a" if r["destruction_top1"] is None else f"{100 * r['destruction_top1']:.1f}"
            t5 = "n/a" if r["destruction_top5"] is None else f"{100 * r['destruction_top5']:.1f}"
            cells.append(f"{t1} / {t5} (n={r['destruction_top1_n']})")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines)



def print_cmd(patch: Path = typer.Argument(..., help="Patch PNG (RGBA; its <stem>.patch.json sidecar adds metadata)"),
              size_mm: float = typer.Option(100.0, "--size-mm", help="Printed patch width in mm"),
              paper: str = typer.Option("a4", "--paper", help="a4, letter or a3"),
              copies_sizes: str = typer.Option(None, "--copies-sizes", help="Several widths, e.g. 50,100,150"),
              out: Path = typer.Option(Path("sheet.pdf"), "--out", "-o", help="Output PDF"),
              dpi: float = typer.Option(300.0, "--dpi", help="DPI of the exported patch PNG (0 = none)"),
              png: Path = typer.Option(None, "--png", help="Patch PNG path (default <out>.print.png)"),
              force: bool = ForceOpt,
              json_out: bool = JsonOpt) -> None:
    """A PDF with the patch at exact size, 4 ArUco markers, a QR code, a 100 mm scale bar and a caption;
    writes <out>.pdf, its manifest <out>.sheet.json and the patch at print size <out>.print.png."""
    from patchlab.artifacts import check_outputs
    from patchlab.physical.printing import WRITER, print_patch, print_paths, save_print

    check_outputs(print_paths(out, png, png=bool(dpi)), WRITER, force)  # before any work
    result = print_patch(patch, size_mm, paper, _floats(copies_sizes, "--copies-sizes"), dpi or None)
    save_print(result, out, png, force=force)
    if json_out:
        print_json(result.summary())
        return
    typer.echo(f"wrote {out} ({result.manifest.n_pages} page(s), sheet {result.manifest.sheet_id}) and "
               f"{result.files['manifest']}")
    for c in result.manifest.cells:
        x, y, w, h = c.rect_mm
        typer.echo(f"  page {c.page + 1}: {w:g} x {h:g} mm at ({x:.1f}, {y:.1f}) mm from the top-left corner")
    if "png" in result.files:
        typer.echo(f"wrote {result.files['png']} ({result.png_px[0]}x{result.png_px[1]} px at {dpi:g} dpi)")
    typer.echo("print at Actual size / 100%, no scaling; check that the bar measures 100 mm")

def sheet_cmd(images: list[Path] = typer.Argument(..., help="Images named <wnid>_<name>.jpg, folders of them, "
                                                            "or built-in samples as sample:chelsea"),
              model: str = typer.Option("efficientnet_lite0", "--model", "-m", help="Zoo model"),
              attacks: str = typer.Option("fgsm,bim,ll", "--attacks", help="Comma-separated attack names"),
              eps: str = typer.Option("2,4,8,16", "--eps", help="eps list; values >= 1 are in 1/255 units"),
              paper: str = typer.Option("a4", "--paper"),
              cell_mm: float = typer.Option(90.0, "--cell-mm", help="Printed side of each image (90 mm: 2 x 2 per A4 page)"),
              limit: int = typer.Option(None, "--limit", min=1, help="Use the first N images"),
              sample: int = typer.Option(None, "--sample", min=1, help="Use N images drawn at random (--seed)"),
              seed: int = typer.Option(0, "--seed", help="Seed for --sample"),
              out: Path = typer.Option(Path("sheet.pdf"), "--out", "-o"),
              manifest: Path = typer.Option(None, "--manifest", help="Manifest path (default <out>.sheet.json)"),
              force: bool = ForceOpt,
              device: str = DeviceOpt, json_out: bool = JsonOpt) -> None:
    """Kurakin et al. 2016 sheet: clean + adversarial versions in a grid, markers, QR and a <out>.sheet.json
    manifest."""
    from patchlab.artifacts import check_outputs, default_path
    from patchlab.data import list_images
    from patchlab.errors import parse_eps_list
    from patchlab.models import load_model
    from patchlab.physical.kurakin import build_kurakin_sheet, load_labelled_images

    from patchlab.data import load_sample

    files: list[Path] = []
    builtin = []
    for p in images:
        if str(p).startswith("sample:"):
            builtin.append(load_sample(str(p).split(":", 1)[1]))
        else:
            files += list_images(p) if p.is_dir() else [p]
    if sample:
        import random

        files = sorted(files)
        random.Random(seed).shuffle(files)
        files = sorted(files[:sample])
    if limit:
        files = files[:limit]
    imgs, labels, names = load_labelled_images(files) if files else ([], [], [])
    imgs += [b.image for b in builtin]
    labels += [b.label for b in builtin]
    names += [f"sample:{b.name}" for b in builtin]
    if not imgs:
        raise PatchlabError("no images given")
    check_outputs({out: "sheet-pdf", manifest or default_path(out, "sheet-manifest"): "sheet-manifest"},
                  "patchlab sheet", force)  # before the attacks run
    net = load_model(model, device)
    with rich_progress("attacking", enabled=not json_out) as cb:
        sheet = build_kurakin_sheet(net, imgs, labels, names, attacks=attacks.split(","), eps=parse_eps_list(eps),
                                    paper=paper, cell_mm=cell_mm, progress=cb)
    pdf_path, man_path = sheet.save(out, manifest, force=force)
    m = sheet.manifest
    if json_out:
        print_json({"sheet_id": m.sheet_id, "pdf": str(pdf_path), "manifest": str(man_path), "pages": m.n_pages,
                    "cells": len(m.cells), "model": net.name})
        return
    typer.echo(f"wrote {pdf_path} ({m.n_pages} pages, {len(m.cells)} cells, sheet {m.sheet_id}) and {man_path}")
    typer.echo(f"photograph each page, then: patchlab photo-eval PHOTOS... --manifest {man_path}")

def photo_eval_cmd(photos: list[Path] = typer.Argument(..., help="Photos of printed patchlab sheets"),
                   manifest: Path = typer.Option(None, "--manifest", help="The sheet's manifest, <sheet>.sheet.json "
                                                 "(needed for Kurakin sheets; older <sheet>.json files work too)"),
                   model: str = typer.Option(None, "--model", "-m", help="Override the sheet's model"),
                   annotated: Path = typer.Option(None, "--annotated", help="Write an annotated image (PNG)"),
                   min_markers: int = typer.Option(4, "--min-markers", min=2, max=4),
                   page: int = typer.Option(None, "--page", min=0, help="Page index when the QR is unreadable"),
                   white_balance: bool = typer.Option(True, "--white-balance/--no-white-balance",
                                                      help="Normalise each cell by the paper around it"),
                   sharpen: float | None = typer.Option(None, "--sharpen", min=0.0, max=3.0, show_default=False,
                                                 help="Unsharp-mask amount for the cell crops (default 0.75; 0 = off)"),
                   force: bool = ForceOpt,
                   device: str = DeviceOpt, json_out: bool = JsonOpt) -> None:
    """Find the sheet, rectify it, classify every cell; accuracy and Kurakin destruction rate per attack and eps."""
    from patchlab.physical.photo_eval import evaluate_photo, kurakin_summary, merge_cells
    from patchlab.physical.sheets import SheetManifest

    annotated_paths = [] if annotated is None else [annotated] if len(photos) == 1 else \
        [annotated.with_name(f"{annotated.stem}-{i}{annotated.suffix}") for i in range(len(photos))]
    if annotated_paths:
        from patchlab.artifacts import check_outputs

        check_outputs(dict.fromkeys(annotated_paths, "annotated-photo"), "patchlab photo-eval", force)
    man = SheetManifest.from_json(manifest) if manifest else None
    net = None
    if model:
        from patchlab.models import load_model

        net = load_model(model, device)
    results, errors = [], []
    for i, photo in enumerate(photos):
        try:
            r = evaluate_photo(photo, man, model=net, device=device, min_markers=min_markers, page=page,
                               annotate=annotated is not None, white_balance=white_balance,
                               **({} if sharpen is None else {"sharpen_amount": sharpen}))
        except PatchlabError as exc:
            if len(photos) == 1:
                raise PatchlabError(f"{photo}: {exc}") from None
            errors.append({"photo": str(photo), "error": in_cli_words(str(exc))})
            continue
        if annotated is not None:
            _save_rgb(r.annotated, annotated_paths[i])
        results.append((photo, r))
    cells = merge_cells([r for _, r in results])
    summary = kurakin_summary(cells) if cells else None
    if json_out:
        out = {"photos": [{"photo": str(p), **r.to_dict()} for p, r in results], "errors": errors}
        if summary:
            out.update({k: v for k, v in summary.items()})
        print_json(out)
    else:
        for p, r in results:
            _echo_photo(p, r)
        if summary:
            typer.echo(f"clean cells agree with the digital prediction: {summary.get('clean_agreement', float('nan')):.1%}")
            typer.echo("destruction rate top-1 / top-5 (%), Kurakin's definition:")
            typer.echo(format_destruction_table(summary))
        for e in errors:
            typer.echo(f"{e['photo']}: error: {e['error']}", err=True)
    if errors:
        raise PatchlabError(f"{len(errors)} of {len(photos)} photos could not be evaluated (first: {errors[0]['photo']}: "
                            f"{errors[0]['error']})")


def _echo_photo(path: Path, r) -> None:
    """One photo's result as text: the sheet, the fit, the print scale, patches, the scene, every cell."""
    d = r.to_dict()
    typer.echo(f"{path}: {r.kind} sheet {r.sheet_id} page {r.page + 1}, markers {d['found_markers']}, "
               f"reprojection {d['reprojection_rms_mm']:.2f} mm rms")
    if d.get("print_scale"):
        typer.echo(f"  print scale {d['print_scale']:.4f}: the 100 mm bar printed "
                   f"{100 + d['scale_error_mm']:.1f} mm ({d['scale_error_mm']:+.1f} mm)")
    elif d.get("note"):
        typer.echo(f"  {d['note']}")
    for pt in r.patches:
        typer.echo(f"  patch {pt['size_mm']:g} mm: {pt['apparent_px'][0]:.0f} x {pt['apparent_px'][1]:.0f} px "
                   f"in the photo ({pt['frame_fraction']:.1%} of the frame)")
    if r.scene:
        top = r.scene["top5"][0]
        typer.echo(f"  scene: {top['label']} ({top['prob']:.1%})"
                   + (f"; target '{r.scene['target']}' is top-1: {r.scene['target_is_top1']}"
                      if r.scene.get("target_is_top1") is not None else ""))
    for c in r.cells:
        tag = "clean" if c.meta["attack"] == "clean" else f"{c.meta['attack']} eps={c.meta['eps'] * 255:g}"
        mark = "ok " if c.top1 == c.meta["label"] else "   "
        typer.echo(f"  {mark}#{c.meta['source_index']:<3} {tag:<14} {c.labels[0]} ({c.probs[0]:.1%})")


def simulate_cmd(pdf: Path = typer.Argument(..., help="A patchlab PDF sheet"),
                 out: Path = typer.Option(Path("photo.jpg"), "--out", "-o", help="Output JPEG"),
                 page: int = typer.Option(0, "--page", min=0),
                 seed: int = typer.Option(0, "--seed"),
                 dpi: float = typer.Option(150.0, "--dpi", help="Resolution the page is rendered at first"),
                 tilt_max: float = typer.Option(35.0, "--tilt-max", min=0, max=80),
                 print_scale: float = typer.Option(1.0, "--print-scale", help="<1 simulates 'fit to page'"),
                 printer: str = typer.Option(None, "--printer",
                                             help="Known synthetic printer colours: mild or plain_inkjet"),
                 force: bool = ForceOpt,
                 json_out: bool = JsonOpt) -> None:
    """A simulated phone photo of a printed page (perspective, lighting, white balance, blur, noise, JPEG):
    writes the JPEG and its ground truth <out>.truth.json."""
    from pypdf import PdfReader

    from patchlab.artifacts import check_outputs, default_path, tag_jpeg_bytes, write_bytes, write_json

    from patchlab.physical.layout import render_pdf_page
    from patchlab.simulate.photo import PhotoConditions, simulate_photo, synthetic_printer

    if not pdf.is_file():
        raise PatchlabError(f"{pdf}: no such file")
    truth = default_path(out, "photo-truth")
    check_outputs({out: "photo", truth: "photo-truth"}, "patchlab simulate-photo", force)
    try:
        box = PdfReader(str(pdf)).pages[page].mediabox
    except IndexError:
        raise PatchlabError(f"{pdf} has no page {page}") from None
    except Exception as exc:
        raise PatchlabError(f"{pdf}: not a readable PDF ({type(exc).__name__})") from None
    page_mm = (float(box.width) * 25.4 / 72, float(box.height) * 25.4 / 72)
    raster = render_pdf_page(pdf, dpi, page)
    w, h = round(page_mm[0] / 25.4 * dpi), round(page_mm[1] / 25.4 * dpi)
    raster = raster[:h, :w]
    cond = PhotoConditions(tilt_deg=(0.0, tilt_max), print_scale=print_scale)
    colours = synthetic_printer(printer) if printer else None
    photo = simulate_photo(raster, page_mm, seed, cond, printer=colours)
    write_bytes(out, tag_jpeg_bytes(photo.jpeg, "photo", "patchlab simulate-photo"))
    info = {"photo": str(out), "sheet": str(pdf), "page": page, "H_mm_to_px": photo.H.tolist(), **photo.params}
    write_json(truth, info, "photo-truth", "patchlab simulate-photo", indent=1)
    if json_out:
        print_json(info)
    else:
        typer.echo(f"wrote {out} ({photo.params['width']}x{photo.params['height']}, tilt "
                   f"{photo.params['tilt_deg']:.0f} deg) and the ground truth {truth}")

def chart_cmd(out: Path = typer.Option(Path("chart.pdf"), "--out", "-o"),
              paper: str = typer.Option("a4", "--paper"),
              levels: int = typer.Option(7, "--levels", min=2, max=12, help="Values per channel (levels^3 swatches)"),
              force: bool = ForceOpt,
              json_out: bool = JsonOpt) -> None:
    """A printable chart: levels^3 RGB swatches plus a grey ramp, with markers and a QR code; writes <out>.pdf
    and its manifest <out>.sheet.json."""
    from patchlab.artifacts import check_outputs, default_path, write_bytes
    from patchlab.physical.calibration import make_chart

    man_path = default_path(out, "sheet-manifest")
    check_outputs({out: "sheet-pdf", man_path: "sheet-manifest"}, "patchlab calibrate chart", force)
    pdf, manifest, _ = make_chart(paper, levels)
    write_bytes(out, pdf)
    manifest.to_json(man_path)
    if json_out:
        print_json({"pdf": str(out), "manifest": str(man_path), "sheet_id": manifest.sheet_id,
                    "swatches": len(manifest.cells)})
    else:
        typer.echo(f"wrote {out} ({len(manifest.cells)} swatches, sheet {manifest.sheet_id}) and {man_path}")

def fit_cmd(photo: Path = typer.Argument(..., help="Photo of the printed chart"),
            out: Path = typer.Option(None, "--out", "-o", help="Colour model JSON (default <photo>.colour.json)"),
            kind: str = typer.Option("root_polynomial", "--kind", help="affine, root_polynomial or per_channel"),
            holdout: float = typer.Option(0.2, "--holdout", help="Fraction of swatches held out for CIEDE2000"),
            manifest: Path = typer.Option(None, "--manifest", help="The chart's <chart>.sheet.json (default: read "
                                          "the QR code)"),
            min_markers: int = typer.Option(4, "--min-markers", min=2, max=4),
            flat_field: bool = typer.Option(True, "--flat-field/--no-flat-field",
                                            help="Divide out lighting using the paper between swatches"),
            force: bool = ForceOpt,
            json_out: bool = JsonOpt) -> None:
    """Fit a differentiable printer->camera colour model; report CIEDE2000 on held-out swatches."""
    from patchlab.artifacts import check_output, default_path
    from patchlab.physical.calibration import fit_calibration
    from patchlab.physical.sheets import SheetManifest

    out = out or default_path(photo, "colour-model")
    check_output(out, "colour-model", "patchlab calibrate fit", force)

    man = SheetManifest.from_json(manifest) if manifest else None
    result = fit_calibration(photo, man, kind, holdout, min_markers, flat_field)
    result.model.to_json(out)
    info = {"colour_model": str(out), **result.to_dict()}
    if json_out:
        print_json(info)
        return
    h, n = result.holdout_delta_e, result.identity_delta_e
    typer.echo(f"fitted {kind} on {result.n_swatches - result.n_holdout} swatches; CIEDE2000 on "
               f"{result.n_holdout} held-out swatches: mean {h['mean']:.2f}, median {h['median']:.2f}, "
               f"p95 {h['p95']:.2f}, max {h['max']:.2f} (without a colour model: mean {n['mean']:.2f})")
    typer.echo(f"wrote {out} (refitted on all {result.n_swatches} swatches; palette of {result.n_swatches} "
               "measured colours for the NPS loss); use it with the patch trainer's --colour option")


def register(app: typer.Typer) -> None:
    app.command("print")(print_cmd)
    app.command("sheet")(sheet_cmd)
    app.command("photo-eval")(photo_eval_cmd)
    app.command("simulate-photo")(simulate_cmd)
    add_group(app, "calibrate", "Colour calibration: print a chart, fit a printer->camera colour model from a photo.",
              chart=chart_cmd, fit=fit_cmd)
