"""Physical world: exact-size PDF sheets with ArUco/QR fiducials, simulated print-and-photograph, photo-eval
(rectify, crop, classify, Kurakin destruction rates), and colour calibration.

    from patchlab.physical import detect_markers, simulate_photo, evaluate_photo
"""

from patchlab.physical.markers import (MarkerSpec, PageFit, apply_homography, detect_markers, fit_page,
                                       marker_corners_mm, marker_image, rectify_page, warp_rect)
from patchlab.physical.sheets import SheetManifest, marker_layout
from patchlab.physical.simulate import PhotoConditions, SimulatedPhoto, simulate_page_photo, simulate_photo

__all__ = [
    "MarkerSpec", "PageFit", "PhotoConditions", "SheetManifest", "SimulatedPhoto", "apply_homography",
    "detect_markers", "evaluate_photo", "fit_page", "marker_corners_mm", "marker_image", "marker_layout",
    "rectify_page", "simulate_page_photo", "simulate_photo", "warp_rect",
]


def __getattr__(name):  # heavier pieces (torch models) load on first use
    if name == "evaluate_photo":
        from patchlab.physical.evaluate import evaluate_photo

        return evaluate_photo
    raise AttributeError(name)
