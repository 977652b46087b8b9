"""Digital attacks: one small class per attack over a shared base; robustness evaluation and the classic demos.

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
from patchlab.attacks.mifgsm import DIFGSM, MIFGSM, TIFGSM
from patchlab.attacks.pgd import PGD, PGDL2
from patchlab.attacks.universal import UniversalPerturbation
from patchlab.errors import PatchlabError
from patchlab.registry import Registry

ATTACKS: Registry[type[Attack]] = Registry("attack")
for _cls, _aliases in (
    (FGSM, ()), (FGM, ()), (BIM, ("ifgsm", "i-fgsm")), (LeastLikely, ("least-likely", "least_likely")),
    (PGD, ("pgd-linf",)), (PGDL2, ("pgd-l2",)), (MIFGSM, ("mi-fgsm",)), (DIFGSM, ("di-fgsm",)),
    (TIFGSM, ("ti-fgsm",)), (CW, ("cwl2", "cw-l2", "carlini-wagner")), (DeepFool, ()),
    (UniversalPerturbation, ("universal",)),
):
    ATTACKS.register(_cls.name, _cls, title=_cls.title, aliases=_aliases)


def make_attack(name: str, model, **kwargs) -> Attack:
    """An attack by name (see ATTACKS) bound to `model`; kwargs such as eps ("8/255" or 0.031), steps, alpha,
    target (class index or name), least_likely, random_start, restarts, seed. Unknown names or options raise
    a one-line PatchlabError."""
    key = ATTACKS.resolve(name)
    cls = ATTACKS.get(key)
    allowed = cls.options()
    unknown = sorted(k for k in kwargs if k not in allowed)
    if unknown:
        raise PatchlabError(f"{key} does not take {', '.join(unknown)} (it takes {', '.join(sorted(allowed))})")
    return cls(model, **kwargs)


__all__ = [
    "ATTACKS", "Attack", "AttackResult", "BIM", "CW", "DIFGSM", "DeepFool", "FGM", "FGSM", "LeastLikely", "MIFGSM",
    "PGD", "PGDL2", "TIFGSM", "UniversalPerturbation", "make_attack", "parse_eps",
]
