"""The PatchCleanser numbers the README and docs/defenses.md report for all 280 held-out images, checked against the
recorded runs they come from (docs/results/defenses/patchcleanser_heldout280_*.json, written by `patchlab defend
certify patchcleanser --limit 280 --json`): the per-image verdicts add up to the summaries, the two runs cover the
same images, and the claims (the percentages shown, a measurable paired gain, the 50% goal missed) follow from them."""

from __future__ import annotations

import json
from pathlib import Path

from scipy.stats import binomtest

from patchlab.stats import wilson_interval

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "results" / "defenses"


def _run(name: str) -> dict:
    return json.loads((RESULTS / f"patchcleanser_heldout280_{name}.json").read_text())


def _certified(row: dict) -> bool:
    return bool(row["certified"]) and row["certified_for"] == row["label"]


def test_recorded_280_image_certification_supports_what_the_docs_report():
    original, tuned = _run("original"), _run("finetuned")
    certified = {}
    for name, run in (("original", original), ("tuned", tuned)):
        rows = run["per_image"]
        assert run["n"] == len(rows) == 280 and run["part"] == "heldout" and run["patch_area"] == 0.02
        assert run["masks"] == 36 and run["pairs"] == 666
        certified[name] = sum(map(_certified, rows))
        assert certified[name] / 280 == run["certified_accuracy"]
        assert sum(r["prediction"] == r["label"] for r in rows) / 280 == run["clean_accuracy"]
        assert sum(r["undefended"] == r["label"] for r in rows) / 280 == run["undefended_accuracy"]
    assert [(r["file"], r["label"]) for r in original["per_image"]] == [
        (r["file"], r["label"]) for r in tuned["per_image"]]

    shown = f"[{100 * original['certified_accuracy']:.1f}% / {100 * tuned['certified_accuracy']:.1f}%]"
    assert shown in (REPO / "README.md").read_text(), f"the README's PatchCleanser row should read {shown}"
    defenses = (REPO / "docs" / "defenses.md").read_text()
    gained = sum(_certified(t) and not _certified(o) for o, t in zip(original["per_image"], tuned["per_image"]))
    lost = sum(_certified(o) and not _certified(t) for o, t in zip(original["per_image"], tuned["per_image"]))
    assert f"certifies {gained} images the original does not and loses {lost}" in defenses
    # "measurable": the paired gain is significant at 5%; "goal missed": the interval's top is below 50%
    assert gained > lost and binomtest(gained, gained + lost, 0.5).pvalue < 0.05
    top = wilson_interval(certified["tuned"], 280)[1]
    assert top < 0.5 and f"the interval's top, {100 * top:.1f}%, is below 50%" in defenses
    # clean accuracy within the 3 points the issue allows, defended and undefended
    for key in ("clean_accuracy", "undefended_accuracy"):
        assert tuned[key] - original[key] >= -0.03
