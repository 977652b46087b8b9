"""The torchrun side of tests/patch_trainer/test_distributed.py; run as

    torchrun --standalone --nproc-per-node 2 tests/patch_trainer/dist_worker.py WORKDIR

WORKDIR/spec.json holds {"config": PatchConfig fields, "cli": [{"args": [...], "rank1": [...]}, ...]}. Each rank
joins the gloo group once and (1) trains `config` step by step through the PatchTrainer API, rank 0 saving the state
before the first step and after every step as WORKDIR/state<k>.pt; (2) runs each `cli` command in the same group
(rank 1 appends its "rank1" arguments). It writes WORKDIR/rank<r>.json: the step metrics, the CLI exit codes, the
seconds spent in the all-reduce and the names of the threads left after the group is gone (gloo's must be gone too:
one that outlives its group into interpreter shutdown can abort the process).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _thread_names() -> list[str] | None:
    """This process's native threads by name (Linux), the C++ ones included."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return None
    return sorted((task / "comm").read_text().strip() for task in tasks.iterdir())


def main(work: Path) -> None:
    import faulthandler

    faulthandler.enable()  # should a rank still die of a signal, its Python stacks reach the test's failure message
    from patchlab.cli import main as cli
    from patchlab.patch.distributed import process_group
    from patchlab.patch.train import PatchConfig, PatchTrainer, save_checkpoint

    spec = json.loads((work / "spec.json").read_text())
    with process_group("cpu") as ranks:
        trainer = PatchTrainer(PatchConfig(**spec["config"]), ranks=ranks).prepare()
        if ranks.is_main:
            save_checkpoint(work / "state0.pt", trainer.state_dict())
        metrics = []
        while trainer.steps_taken < trainer.cfg.steps:
            metrics.append(trainer.step())
            if ranks.is_main:
                save_checkpoint(work / f"state{trainer.steps_taken}.pt", trainer.state_dict())
        comm = ranks.comm_seconds
        codes = [cli(command["args"] + (command.get("rank1", []) if ranks.rank == 1 else []))
                 for command in spec["cli"]]
        report = {"rank": ranks.rank, "world": ranks.world, "backend": ranks.backend, "metrics": metrics,
                  "cli": codes, "comm_seconds": comm}
    report["threads_after"] = _thread_names()
    (work / f"rank{report['rank']}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
