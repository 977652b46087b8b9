"""Simulated worlds with ground truth, for testing the physical pipeline without a printer or a camera.

    photo.py   a printed page photographed: random pose, lighting, white balance, blur, noise, JPEG (photo-eval)
    scene.py   a moving sheet with ArUco markers and a printed patch seen by a camera (the live pipeline)

    from patchlab.simulate import simulate_page_photo, SyntheticScene
"""

from patchlab.simulate.photo import (PhotoConditions, SimulatedPhoto, simulate_page_photo, simulate_photo,
                                     synthetic_printer)
from patchlab.simulate.scene import Motion, Pose, SceneFrame, SyntheticScene, render_sheet, synthetic_frames

__all__ = ["Motion", "PhotoConditions", "Pose", "SceneFrame", "SimulatedPhoto", "SyntheticScene", "render_sheet",
           "simulate_page_photo", "simulate_photo", "synthetic_frames", "synthetic_printer"]
