"""Defenses and certification: PatchCleanser (certified patch defense), masking fine-tuning, local gradient
smoothing, input transformations with BPDA/EOT adaptive attacks, adversarial training and randomized smoothing."""

from patchlab.defenses.masks import MaskSet, mask_set, patch_side
from patchlab.defenses.patchcleanser import PatchCleanser, Verdict, rule_from_map, summarize

__all__ = ["MaskSet", "PatchCleanser", "Verdict", "mask_set", "patch_side", "rule_from_map", "summarize"]
