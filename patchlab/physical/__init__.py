"""Print and photograph: exact-size PDF sheets with ArUco/QR fiducials, photo-eval (rectify, crop, classify, Kurakin
destruction rates), colour calibration, and printable EOT perturbations of whole photos.

    from patchlab.physical import detect_markers, evaluate_photo
    from patchlab.simulate import simulate_photo        # a printed page photographed, without a printer
"""

from patchlab.physical.markers import (MarkerSpec, PageFit, detect_markers, fit_page, marker_corners_mm,
                                       marker_image, sheet_quads)
from patchlab.physical.sheets import SheetManifest, marker_layout

__all__ = [
    "MarkerSpec", "PageFit", "SheetManifest", "detect_markers", "evaluate_photo", "fit_page", "marker_corners_mm",
    "marker_image", "marker_layout", "sheet_quads",
]


def __getattr__(name):  # heavier pieces (torch models) load on first use
    if name == "evaluate_photo":
        from patchlab.physical.photo_eval import evaluate_photo

        return evaluate_photo
    raise AttributeError(name)
