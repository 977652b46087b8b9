"""Digital attacks: one small class per attack over a shared base; evaluation and the classic demos.

    from patchlab.attacks import make_attack
    result = make_attack("pgd", model, eps="4/255", steps=10)(images, labels)
    result.adv, result.success, result.linf, result.l2, result.queries
"""

from __future__ import annotations

from patchlab.attacks.base import Attack, AttackResult, parse_eps
from patchlab.attacks.bim import BIM, LeastLikely
from patchlab.attacks.cw import CW
from patchlab.attacks.deepfool import DeepFool
from patchlab.attacks.fgsm import FGM, FGSM
from patchlab.attacks.pgd import PGD, PGDL2
from patchlab.attacks.transfer import DIFGSM, MIFGSM, TIFGSM
from patchlab.attacks.universal import UniversalPerturbation
from patchlab.errors import PatchlabError

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM, "fgm": FGM, "bim": BIM, "ll": LeastLikely, "pgd": PGD, "pgdl2": PGDL2, "mifgsm": MIFGSM,
    "difgsm": DIFGSM, "tifgsm": TIFGSM, "cw": CW, "deepfool": DeepFool, "uap": UniversalPerturbation,
}
_ALIASES = {"ifgsm": "bim", "i-fgsm": "bim", "least-likely": "ll", "least_likely": "ll", "pgd-linf": "pgd",
            "pgd-l2": "pgdl2", "cwl2": "cw", "cw-l2": "cw", "carlini-wagner": "cw", "mi-fgsm": "mifgsm",
            "di-fgsm": "difgsm", "ti-fgsm": "tifgsm", "universal": "uap"}


def make_attack(name: str, model, **kwargs) -> Attack:
    """An attack by name (see ATTACKS) bound to `model`; kwargs such as eps ("8/255" or 0.031), steps, alpha,
    target (class index or name), least_likely, random_start, restarts, seed. Unknown names or options raise
    a one-line PatchlabError."""
    import difflib
    import inspect

    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in ATTACKS:
        close = difflib.get_close_matches(key, list(ATTACKS) + list(_ALIASES), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise PatchlabError(f"unknown attack '{name}'{hint} (choose from {', '.join(ATTACKS)})")
    cls = ATTACKS[key]
    allowed = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            allowed |= {p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "model", "kwargs")}
    unknown = sorted(k for k, v in kwargs.items() if k not in allowed)
    if unknown:
        raise PatchlabError(f"{key} does not take {', '.join(unknown)} (it takes {', '.join(sorted(allowed))})")
    return cls(model, **kwargs)


__all__ = [
    "ATTACKS", "Attack", "AttackResult", "BIM", "CW", "DIFGSM", "DeepFool", "FGM", "FGSM", "LeastLikely", "MIFGSM",
    "PGD", "PGDL2", "TIFGSM", "UniversalPerturbation", "make_attack", "parse_eps",
]
