"""Evaluation sweeps: one patch scored over models x areas x presets x defenses x seeds, each cell a Ray task (or a
local process pool without Ray), one JSON per cell, merged into a table and a heatmap; finished cells never rerun."""

from patchlab.sweep.defenses import DEFENSES, Defended
from patchlab.sweep.grid import SweepGrid
from patchlab.sweep.run import run_sweep

__all__ = ["DEFENSES", "Defended", "SweepGrid", "run_sweep"]
