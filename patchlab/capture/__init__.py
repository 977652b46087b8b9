"""Live camera pipeline: frame sources, fast inference, overlay, virtual patch, per-frame recording.

    from patchlab.capture import LiveState, load_backend, load_patch, open_source, process_frame
    backend = load_backend("efficientnet_lite0")                      # ONNX Runtime when installed
    state = LiveState(backend, patch=load_patch("printables/toaster_efficientnet_lite0.png"), virtual=True)
    with open_source("synthetic:90") as source:                      # the simulated scene (patchlab.simulate)
        while (frame := source.read()) is not None:
            annotated, result = process_frame(frame, state)
"""

from patchlab.capture.inference import EagerBackend, OnnxBackend, check_onnx, export_onnx, load_backend
from patchlab.capture.pipeline import FrameResult, LiveState, centre_square, frame_to_input, process_frame
from patchlab.capture.recording import Recorder, load_recording, summarize, write_summary
from patchlab.capture.session import SessionResult, run_session
from patchlab.capture.sources import (CameraRequest, FolderSource, LatestFrameReader, OpenCVSource, ReconnectPolicy,
                                      SourceState, SourceStatus, SyntheticSource, open_camera, open_source,
                                      open_stream, open_video_file, parse_source)
from patchlab.capture.video import write_video
from patchlab.capture.virtual_patch import Anchor, Patch, VirtualPatch, composite_onto_quad, load_patch

__all__ = [
    "Anchor", "CameraRequest", "EagerBackend", "FolderSource", "FrameResult", "LatestFrameReader", "LiveState",
    "OnnxBackend", "OpenCVSource", "Patch", "ReconnectPolicy", "Recorder", "SourceState", "SessionResult",
    "SourceStatus", "SyntheticSource", "VirtualPatch", "centre_square", "check_onnx", "composite_onto_quad",
    "export_onnx", "frame_to_input", "load_backend", "load_patch", "load_recording", "open_camera", "open_source",
    "open_stream", "open_video_file", "parse_source", "process_frame", "run_session", "summarize", "write_summary",
    "write_video",
]
