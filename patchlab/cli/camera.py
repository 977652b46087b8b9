"""`patchlab camera` (live classifier on a webcam, video, stream, folder or synthetic scene), `camera-report`,
`camera-scene`."""

from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import typer

from patchlab.cli._common import ArchOpt, DeviceOpt, ForceOpt, JsonOpt, ModelOpt, print_json


def gui_available() -> tuple[bool, str]:
    """Whether OpenCV can open a window here, and why not."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY/WAYLAND_DISPLAY unset)"
    import cv2

    try:
        cv2.namedWindow("patchlab-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("patchlab-probe")
    except cv2.error:
        return False, "this OpenCV build has no GUI (opencv-python-headless is installed)"
    return True, ""


def _status_line(result, status, recorded: int) -> str:
    top = result.top5[0]
    parts = [f"frame {result.index + 1}", f"{result.fps:5.1f} fps", f"{result.latency_ms:5.1f} ms",
             f"top-1 {top['label'][:22]} {top['prob']:.0%}"]
    if result.target_prob is not None:
        parts.append(f"{result.target_label[:16]} {result.target_prob:.0%}{' HIT' if result.is_target else ''}")
    if result.patch_size_px:
        parts.append(f"patch {result.patch_size_px:.0f}px")
    if result.defense:
        parts.append(f"{result.defense}: {result.defended_label[:22]}{' CERTIFIED' if result.certified else ''}")
    parts.append(status.state.value if hasattr(status, "state") else "")
    if recorded:
        parts.append(f"rec {recorded}")
    return " | ".join(p for p in parts if p)


def _print_summary(console, result, summary: dict) -> None:
    from rich.table import Table

    attack = summary.get("attack", {})
    lat = attack.get("latency_ms", {})
    console.print(f"[bold]{result.frames} frames[/] in {result.seconds:.1f} s ({result.fps:.1f} fps end to end); "
                  f"processing p50 {lat.get('p50', 0):.1f} ms, p95 {lat.get('p95', 0):.1f} ms; "
                  f"stopped: {result.stopped}")
    for key in ("attack", "baseline"):
        part = summary.get(key)
        if not part or not part.get("target"):
            continue
        t = part["target"]
        console.print(f"{key}: top-1 = {part.get('target_label')} in {t['k']}/{t['n']} frames = {t['share']:.1%} "
                      f"(Wilson 95% {t['ci95'][0]:.1%}-{t['ci95'][1]:.1%})")
        if part.get("by_size"):
            table = Table("patch size (px)", "frames", "target share", "95% interval", "mean P(target)", title=key)
            for b in part["by_size"]:
                table.add_row(f"{b['size_px'][0]}-{b['size_px'][1]}", str(b["n"]), f"{b['share']:.1%}",
                              f"{b['ci95'][0]:.1%}-{b['ci95'][1]:.1%}", f"{b['target_prob_mean']:.3f}")
            if part.get("no_patch_size"):
                b = part["no_patch_size"]
                table.add_row("markers not seen", str(b["n"]), f"{b['share']:.1%}",
                              f"{b['ci95'][0]:.1%}-{b['ci95'][1]:.1%}", "")
            console.print(table)
    if not attack.get("target") and attack.get("top1_counts"):
        common = list(attack["top1_counts"].items())[:5]
        console.print("most frequent top-1: " + ", ".join(f"{k} ({v})" for k, v in common))


def _json_summary(result, summary: dict, model: str, backend: str) -> dict:
    attack = summary.get("attack", {})
    t = attack.get("target") or {}
    out = {"model": model, "backend": backend, "defense": attack.get("defense", "none"), "n": result.frames,
           "seconds": result.seconds, "fps": result.fps, "certified": attack.get("certified"),
           "stopped": result.stopped, "error": result.error, "latency_ms": attack.get("latency_ms"),
           "success_rate": t.get("share"), "success_rate_ci95": t.get("ci95"), "target": attack.get("target_label"),
           "by_size": attack.get("by_size"), "top1_counts": attack.get("top1_counts"),
           "recording": str(result.recording) if result.recording else None, "source": result.source_info}
    if summary.get("baseline"):
        b = summary["baseline"].get("target") or {}
        out["baseline"] = {"success_rate": b.get("share"), "success_rate_ci95": b.get("ci95"), "n": b.get("n"),
                           "by_size": summary["baseline"].get("by_size")}
    return out


def camera_cmd(
    source: str = typer.Option("0", "--source", "-s", help="Camera index, video file, rtsp:// or http:// URL, "
                               "image folder, or synthetic[:FRAMES]"),
    model: str = ModelOpt, arch: str = ArchOpt, device: str = DeviceOpt,
    target: str = typer.Option(None, "--target", "-t", help="Target class (name, index or wnid); "
                               "defaults to the patch sidecar's target"),
    patch: Path = typer.Option(None, "--patch", help="Patch PNG (RGBA) with its .patch.json sidecar"),
    virtual: bool = typer.Option(False, "--virtual", help="Paste the patch into the live frame (no printer)"),
    anchor: str = typer.Option("sheet", "--anchor", help="Where the virtual patch goes: sheet (between 4 corner "
                               "markers), marker[:ID], fixed[:cx,cy,size]"),
    patch_scale: float = typer.Option(1.0, "--patch-scale", min=0.05, max=10,
                                      help="Patch side vs its anchor quad: where the virtual patch goes; for a "
                                      "printed sheet, the patch vs the area between the markers' inner corners "
                                      "(for the size measurement)"),
    crop: str = typer.Option("centre", "--crop", help="Classifier input: centre, full, or markers (the region "
                             "framed by the sheet's ArUco markers)"),
    record: Path = typer.Option(None, "--record", help="Record into a fresh run folder inside this one (DIR/run-001, "
                                "run-002, ...): meta.json, frames.jsonl, summary.json, summary.png"),
    append: bool = typer.Option(False, "--append", help="Add this session's frames to the latest run in --record "
                                "(its summary then covers the whole run)"),
    force: bool = typer.Option(False, "--force", help="Replace the latest run in --record (and an existing "
                               "--save-video file)"),
    record_format: str = typer.Option("jsonl", "--record-format", help="jsonl or csv"),
    baseline: Path = typer.Option(None, "--baseline",
                                  help="A baseline recording (no patch) to summarise alongside"),
    max_frames: int = typer.Option(None, "--max-frames", min=1, help="Stop after N frames"),
    headless: bool = typer.Option(False, "--headless", help="No window: a rolling status line on stderr"),
    onnx: bool = typer.Option(False, "--onnx",
                              help="Require ONNX Runtime (default: use it when installed, on CPU)"),
    eager: bool = typer.Option(False, "--eager", help="Use eager PyTorch even when ONNX Runtime is installed"),
    threads: int = typer.Option(None, "--threads", min=1, help="Inference threads"),
    backend: str = typer.Option("any", "--backend", help="Camera backend: any, v4l2, dshow, msmf, avfoundation"),
    width: int = typer.Option(1280, "--width", help="Requested camera width"),
    height: int = typer.Option(720, "--height", help="Requested camera height"),
    fps: float = typer.Option(30, "--fps", help="Requested camera frame rate"),
    no_mjpg: bool = typer.Option(False, "--no-mjpg", help="Do not request MJPG from the camera"),
    realtime: bool = typer.Option(False, "--realtime", help="Pace the synthetic scene at its frame rate"),
    loop: bool = typer.Option(False, "--loop", help="Loop an image folder"),
    save_video: Path = typer.Option(None, "--save-video", help="Also write the annotated frames (.avi/.mp4/.y4m)"),
    defense: str = typer.Option("none", "--defense", help="none, patchcleanser (certified), lgs, jpeg or median"),
    defense_area: float = typer.Option(0.1, "--defense-area", help="PatchCleanser: largest patch it certifies "
                                       "against, as a fraction of the model input"),
    defense_masks: int = typer.Option(6, "--defense-masks", min=1, help="PatchCleanser: masks per side (fewer "
                                      "is faster: k*k*(k*k+1)/2 passes for a certificate)"),
    json_out: bool = JsonOpt,
) -> None:
    """Live classifier with overlay, virtual patch and per-frame recording. q/Esc or Ctrl-C ends it cleanly."""
    from rich.console import Console

    from patchlab.capture import CameraRequest, LiveState, load_backend, load_patch, open_source, run_session
    from patchlab.capture.sources import opencv_quiet
    from patchlab.errors import PatchlabError

    opencv_quiet()
    err = Console(stderr=True)
    baseline = _check_camera_options(onnx, eager, record_format, baseline, record, append, force, save_video)
    from patchlab.defenses.registry import check_defenses

    defense, = check_defenses([defense], "live")  # one line naming the choices, before a source opens
    the_patch = load_patch(patch) if patch is not None else None
    synthetic = {"patch": the_patch if (the_patch is not None and not virtual) else None, "realtime": realtime}
    if source.strip() == "synthetic":
        synthetic["frames"] = None  # endless unless synthetic:N or --max-frames
    camera = CameraRequest(backend=backend, width=width, height=height, fps=fps, mjpg=not no_mjpg)
    src = open_source(source, camera=camera, on_state=_source_messages(err), loop=loop, synthetic=synthetic)
    try:
        kind = "onnx" if onnx else "eager" if eager else "auto"
        with err.status(f"loading {model} ({kind})", spinner="dots") if not json_out else nullcontext():
            net = load_backend(model, kind, device, threads=threads, arch=arch)
        guard = None
        if defense != "none":
            from patchlab.defenses.live import LiveDefense, live_model

            guard = LiveDefense(defense, live_model(net), defense_area, defense_masks)
        state = LiveState(net, target=target, patch=the_patch, virtual=virtual, anchor=anchor,
                          patch_scale=patch_scale, crop=crop, detect="on" if record else "auto", defense=guard)
        info = dict(getattr(src, "info", {}))
        window = not headless and _window_available(err)
        if not json_out:
            err.print(f"source: {_describe_source(info)}; model {net.name} on {net.describe()}"
                      + (f"; target {state.target_label}" if state.target_label else ""))
        recorder = None if record is None else _open_recorder(record, append, force, record_format, {
            "source": source, "source_info": info, "model": net.name, "backend": net.describe(),
            "target": state.target_label, "target_index": state.target_index,
            "patch": str(patch) if patch else None, "virtual": virtual, "anchor": anchor, "crop": crop,
            "defense": defense, **({"defense_settings": guard.settings} if guard else {})})
    except BaseException:
        src.close()
        raise
    frames = _FrameOutput(err, window, json_out, save_video, recording=recorder is not None)
    try:
        result = run_session(src, state, recorder=recorder, max_frames=max_frames, on_frame=frames.show,
                             baseline=baseline)
    finally:
        frames.close()
    if json_out:
        print_json(_json_summary(result, result.summary, net.name, net.describe()))
    else:
        _print_summary(err, result, result.summary)
        if result.recording:
            plot = ", summary.png" if (result.recording / "summary.png").is_file() else ""
            err.print(f"recording: {result.recording}/frames.{record_format}, summary.json{plot}")
    if result.stopped == "failed":
        raise PatchlabError(result.error or "the source failed")


def _check_camera_options(onnx: bool, eager: bool, record_format: str, baseline: Path | None, record: Path | None,
                          append: bool, force: bool, save_video: Path | None) -> Path | None:
    """Every check that can fail before a source opens; returns the baseline's run folder."""
    from patchlab.errors import PatchlabError

    if onnx and eager:
        raise PatchlabError("--onnx and --eager exclude each other")
    if record_format not in ("jsonl", "csv"):
        raise PatchlabError(f"--record-format must be jsonl or csv, got {record_format}")
    if baseline is not None and record is None:
        raise PatchlabError("--baseline needs --record DIR (the summary is written there)")
    if (append or force) and record is None and not (force and save_video):
        raise PatchlabError(f"{'--append' if append else '--force'} needs --record DIR")
    if append and force:
        raise PatchlabError("--append and --force exclude each other")
    if record is not None and record.exists() and not record.is_dir():
        raise PatchlabError(f"--record {record}: is a file; give a folder")
    if save_video is not None:
        from patchlab.artifacts import check_output

        check_output(save_video, "video", "patchlab camera", force)
    if baseline is None:
        return None
    from patchlab.capture.recording import resolve_recording

    return resolve_recording(baseline)  # before any work: one recording, or say which are there


def _source_messages(err):
    """The source's reconnect and failure events as lines on stderr."""
    def on_state(status) -> None:
        msg = {"reconnecting": f"[yellow]source lost; reconnecting (attempt {status.failures})[/]",
               "connected": "[green]source reconnected[/]", "failed": f"[red]{status.last_error}[/]"}
        if status.state.value in msg and (status.state.value != "connected" or status.reconnects):
            err.print(msg[status.state.value])

    return on_state


def _window_available(err) -> bool:
    ok, why = gui_available()
    if not ok:
        err.print(f"[yellow]no window: {why}; running headless[/] (pass --headless to silence this)")
    return ok


def _describe_source(info: dict) -> str:
    obtained = info.get("obtained")
    desc = (f"{info.get('kind')} {obtained['width']}x{obtained['height']} @ {obtained['fps']:g} fps "
            f"{obtained['fourcc']} via {obtained['backend']}" if obtained else
            f"{info.get('kind')} {info.get('width', '?')}x{info.get('height', '?')}")
    if info.get("ignored"):
        desc += f" (camera ignored the requested {', '.join(info['ignored'])})"
    return desc


def _open_recorder(record: Path, append: bool, force: bool, record_format: str, meta: dict):
    """A Recorder in a fresh run folder of `record`, or (append/force) in its latest run."""
    from patchlab.artifacts import latest_run_folder, next_run_folder
    from patchlab.capture import Recorder
    from patchlab.capture.recording import is_recording

    folder, mode = None, "new"
    if append or force:  # the latest run (or DIR itself when an older version recorded straight into it)
        folder = latest_run_folder(record) or (record if is_recording(record) else None)
        mode = "append" if append else "overwrite"
    if folder is None:
        folder, mode = next_run_folder(record), "new"
    return Recorder(folder, mode=mode, meta=meta, fmt=record_format)


class _FrameOutput:
    """Where each annotated frame goes: the video file, an OpenCV window (q/Esc stops), a rolling status line."""

    def __init__(self, err, window: bool, json_out: bool, save_video: Path | None, recording: bool):
        self.err, self.json_out, self.save_video, self.recording = err, json_out, save_video, recording
        self.window = window
        self.writer = _VideoSink(save_video) if save_video else None
        self.tty = err.is_terminal
        self.last_print = 0.0

    def show(self, annotated, result, status) -> bool:
        if self.writer is not None:
            self.writer.write(annotated)
        if self.window:
            import cv2

            cv2.imshow("patchlab camera", annotated)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                return False
        now = time.monotonic()
        if not self.json_out and now - self.last_print > (0.25 if self.tty else 2.0):
            self.last_print = now
            line = _status_line(result, status, result.index + 1 if self.recording else 0)
            if self.tty:
                sys.stderr.write("\r" + line[:self.err.width - 1].ljust(self.err.width - 1))
                sys.stderr.flush()
            else:
                sys.stderr.write(line + "\n")
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            if self.writer.error:
                self.err.print(f"[red]--save-video {self.save_video}: {self.writer.error}[/]")
        if self.window:
            import cv2

            cv2.destroyAllWindows()
        if self.tty and not self.json_out:
            sys.stderr.write("\n")


def camera_report_cmd(recording: Path = typer.Argument(..., help="A run folder written by `patchlab camera "
                                                      "--record` (or the --record folder when it holds one run)"),
                      baseline: Path = typer.Option(None, "--baseline", help="Baseline recording (no patch)"),
                      force: bool = ForceOpt,
                      json_out: bool = JsonOpt) -> None:
    """Summarise a camera recording: target share (Wilson 95%) by apparent patch size, vs a baseline; writes
    report.json and report.png in the run folder (its summary.json stays as recorded)."""
    from rich.console import Console

    from patchlab.artifacts import check_outputs
    from patchlab.capture import write_summary
    from patchlab.capture.recording import resolve_recording
    from patchlab.capture.session import SessionResult

    folder = resolve_recording(recording)
    check_outputs({folder / "report.json": "recording-report", folder / "report.png": "recording-report-plot"},
                  "patchlab camera-report", force)
    summary = write_summary(folder, baseline=baseline, report=True)
    attack = summary["attack"]
    times = attack.get("fps")
    result = SessionResult(attack.get("frames", 0), attack["frames"] / times if times else 0.0,
                           summary["meta"].get("stopped", "ended"), summary["meta"].get("error"), summary,
                           folder, summary["meta"].get("source_info", {}))
    if json_out:
        print_json(_json_summary(result, summary, summary["meta"].get("model"), summary["meta"].get("backend")))
        return
    console = Console()
    _print_summary(console, result, summary)
    plot = folder / "report.png"
    console.print(f"wrote {folder / 'report.json'}" + (f" and {plot}" if plot.is_file() else ""))

def camera_scene_cmd(output: Path = typer.Argument(..., help="Video to write: .y4m (Chromium fake camera), "
                                                   ".avi (MJPG) or .mp4"),
                     frames: int = typer.Option(150, "--frames", min=1),
                     patch: Path = typer.Option(None, "--patch", help="Patch PNG printed on the sheet"),
                     width: int = typer.Option(640, "--width", min=64),
                     height: int = typer.Option(480, "--height", min=64),
                     fps: float = typer.Option(30, "--fps", min=1), seed: int = typer.Option(0, "--seed"),
                     background: Path = typer.Option(None, "--background", help="Background image or folder "
                                                     "(default: built-in sample photos)"),
                     force: bool = typer.Option(False, "--force", help="Replace an existing video file")) -> None:
    """Render the synthetic moving-sheet scene (ArUco markers, optional patch) to a video file."""
    from patchlab.artifacts import check_output
    from patchlab.capture import load_patch, write_video
    from patchlab.simulate import SyntheticScene

    check_output(output, "video", "patchlab camera-scene", force)  # videos carry no tag: only --force replaces

    backgrounds = None
    if background is not None:
        import cv2

        from patchlab.data import list_images

        files = list_images(background) if background.is_dir() else [background]
        backgrounds = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
        backgrounds = [b for b in backgrounds if b is not None]
    scene = SyntheticScene(patch=load_patch(patch) if patch else None, backgrounds=backgrounds,
                           size=(width, height), fps=fps, seed=seed, background_every=int(fps * 3))
    write_video(output, (scene.frame(i).image for i in range(frames)), fps=fps)
    typer.echo(f"wrote {output} ({frames} frames, {width}x{height} @ {fps:g} fps)")


class _VideoSink:
    """Collects annotated frames into a video file via write_video (streams, no buffering of all frames)."""

    def __init__(self, path: Path):
        import queue
        import threading

        from patchlab.capture import write_video

        self._q: queue.Queue = queue.Queue(maxsize=64)
        self.error: str | None = None

        def frames():
            while (frame := self._q.get()) is not None:
                yield frame

        def run() -> None:
            try:
                write_video(path, frames())
            except Exception as exc:  # noqa: BLE001 - reported by close()
                self.error = str(exc)
                while self._q.get() is not None:  # keep draining so the session never blocks
                    pass

        self._thread = threading.Thread(target=run, name="video sink", daemon=True)
        self._thread.start()

    def write(self, frame) -> None:
        self._q.put(frame)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(30)


def register(app: typer.Typer) -> None:
    app.command("camera")(camera_cmd)
    app.command("camera-report")(camera_report_cmd)
    app.command("camera-scene")(camera_scene_cmd)
