"""Projected gradient descent (Madry et al. 2018) in Linf and L2, with random start and restarts."""

from __future__ import annotations

from patchlab.attacks.iterative import L2IterativeAttack, LinfIterativeAttack


class PGD(LinfIterativeAttack):
    """PGD-Linf. Defaults: 10 steps, α = 2.5·ε/steps, uniform random start in the ε-ball."""

    name = "pgd"
    title = "PGD (L∞, Madry)"
    random_start_default = True


class PGDL2(L2IterativeAttack):
    """PGD-L2: steps along ∇/‖∇‖₂ and projection onto the L2 ball of radius ε (default 1.0)."""

    name = "pgdl2"
    title = "PGD (L2)"
    default_eps = 1.0
    random_start_default = True
