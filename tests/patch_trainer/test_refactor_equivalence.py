"""The PatchTrainer refactor changed nothing: the trainer as it was before (`git show REFERENCE_COMMIT:...`) and as it
is now give bit-identical patches, logs and sidecars on every branch (targeted with held-out monitoring, untargeted
from labels and from predictions, --init with the success loss and a decay, an ensemble at two input sizes in
bf16), and the old trainer's checkpoints (stopped mid-run, and finished then extended with a decay) resume to the
same result. Results are kept under test-artifacts/trainer-refactor/.

About a minute on a quiet 2-core machine (both trainers, 7 tiny runs each).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from patch_trainer import scenarios as S


def test_refactored_trainer_equals_the_reference_bit_for_bit(imagenet_dir, lite0, artifacts_dir):
    from patchlab.patch import train_patch

    if subprocess.run(["git", "-C", str(S.REPO), "cat-file", "-e", f"{S.REFERENCE_COMMIT}^{{commit}}"]).returncode:
        pytest.fail(f"reference commit {S.REFERENCE_COMMIT} is not in this checkout's history")
    root = artifacts_dir / "trainer-refactor"
    labelled, unlabelled = S.scene_folders(imagenet_dir, root / "scenes")
    reference = S.load_reference_trainer(root)
    work = root / "work"  # one folder for both, so that the configs' paths (out, init) match

    old = S.run_scenarios(reference.train_patch, labelled, unlabelled, lite0, work)
    checkpoints = S.make_checkpoints(reference.train_patch, labelled, lite0, root / "ckpt")
    kept = {name: shutil.copyfile(path, root / f"{name}.ckpt.pt") for name, path in checkpoints.items()}
    old.update(S.resume_from(reference.train_patch, kept, labelled, lite0, work))

    new = S.run_scenarios(train_patch, labelled, unlabelled, lite0, work)
    new.update(S.resume_from(train_patch, kept, labelled, lite0, work))
    torch.save({"reference": old, "refactored": new}, root / "results.pt")

    assert len(old) == 7 and all(r["step"] >= 2 for r in old.values())
    assert S.compare(old, new) == []
