"""Data-parallel patch training: 2 gloo processes (torchrun, this CPU) against 1 process, same global batch and seed.

One torchrun launch (tests/patch_trainer/dist_worker.py) trains a tiny patch for STEPS steps through the API, then
runs `patchlab patch train --distributed` in the same process group: a resume of a 1-process checkpoint, and two
commands that every rank must refuse together (batch smaller than the world; ranks started with other settings).
Checked here, on one process:
- every 2-process step, replayed on 1 process from the same state, gives the same patch to float tolerance (the
  draws are the global batch's, each rank renders its rows bit-identically, the all-reduce averages the gradient)
  and the same generator state, Adam moments and batch metrics;
- the free-running 2-process patch after STEPS steps is as close to the 1-process one as the same process at 2 threads
  is (within FREE_TOL or twice that divergence): rounding differs, and Adam's per-texel normalisation and JPEG's
  rounding amplify it from step to step exactly as a change of thread count does (docs/distributed.md);
- checkpoints resume across world sizes (1 -> 2 through the CLI, 2 -> 1 here), and only rank 0 writes files;
- no gloo thread outlives the group (patchlab.patch.distributed.WORLD_DEFAULT_MODULES says why it could).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

STEPS = 3
STEP_TOL = 1e-6   # one step from the same state: a few float32 ulps of a value in [0, 1]
FREE_TOL = 1e-4   # STEPS free-running steps, or twice a thread-count change's own divergence (docs/distributed.md)
WORKER = Path(__file__).with_name("dist_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _config(scenes: Path, **kw) -> dict:
    cfg = dict(images=str(scenes), patch_size=24, batch=4, steps=STEPS, holdout=0.25, eot="print", log_every=1,
               checkpoint_every=1, device="cpu", out=None)
    cfg.update(kw)
    return cfg


def _cli_args(scenes: Path, out: Path, *extra: str) -> list[str]:
    return ["patch", "train", "--images", str(scenes), "--steps", str(STEPS), "--batch", "4", "--size", "24",
            "--holdout", "0.25", "--preset", "print", "--checkpoint-every", "1", "--device", "cpu", "--json",
            "--out", str(out), "--distributed", *extra]


def _texture(path: Path) -> torch.Tensor:
    return torch.load(path, weights_only=True)["texture"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS="1")


def _two_processes(work: Path, spec: dict) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """dist_worker.py under `torchrun --standalone --nproc-per-node 2`: (the launch, each rank's report)."""
    (work / "spec.json").write_text(json.dumps(spec))
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(WORKER), str(work)], capture_output=True, text=True, env=_env(), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run, [json.loads((work / f"rank{r}.json").read_text()) for r in range(2)]


def _replay(trainer, work: Path, k: int) -> tuple[dict, dict]:
    """One step on one process from the 2-process state after step k: (its metrics and state, the 2-process state
    after step k + 1)."""
    trainer.load_state_dict(torch.load(work / f"state{k}.pt", weights_only=True))
    metrics = trainer.step()
    return {"metrics": metrics, **trainer.state_dict()}, torch.load(work / f"state{k + 1}.pt", weights_only=True)


@pytest.fixture
def one_thread():
    """This process at one thread, like each torchrun rank: only the data-parallel split differs between them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_gloo_processes_follow_one_process(scenes, lite0, tmp_path, one_thread):
    from patchlab.patch import PatchConfig, train_patch
    from patchlab.patch.train import PatchTrainer

    # 1 process first: the reference run, and a checkpoint at step 2 for the 2-process command line to resume
    train_patch(_config(scenes, out=str(tmp_path / "one.png")), models=[lite0])
    train_patch(_config(scenes, steps=2, out=str(tmp_path / "resumed.png")), models=[lite0])
    spec = {"config": _config(scenes),
            "cli": [{"args": _cli_args(scenes, tmp_path / "resumed.png", "--resume")},
                    {"args": _cli_args(scenes, tmp_path / "refused.png", "--batch", "1")},
                    {"args": _cli_args(scenes, tmp_path / "mismatch.png"), "rank1": ["--seed", "1"]}]}
    run, reports = _two_processes(tmp_path, spec)
    assert [(r["world"], r["backend"]) for r in reports] == [(2, "gloo")] * 2
    assert all(r["cli"] == [0, 2, 2] for r in reports), reports  # both ranks refuse together: no rank hangs
    # leaving the group joins gloo's threads, although the model (timm, torch._dynamo) was imported inside it
    assert all(r["threads_after"] is None or not any("gloo" in t for t in r["threads_after"]) for r in reports), \
        [r["threads_after"] for r in reports]
    assert "smaller than the 2 processes" in run.stderr and "runs other settings than rank" in run.stderr
    summaries = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1, run.stdout  # rank 0 reports, rank 1 is quiet

    # every step of the 2-process run, replayed on 1 process from the same state
    one = PatchTrainer(PatchConfig(**_config(scenes)), models=[lite0]).prepare()
    for k in range(STEPS):
        one_step, two = _replay(one, tmp_path, k)
        assert float((one_step["texture"] - two["texture"]).abs().max()) <= STEP_TOL, k
        assert torch.equal(one_step["rng"], two["rng"])  # the same draws: the global batch's, sliced
        for key in ("exp_avg", "exp_avg_sq"):  # the gradient's scale too (Adam's step alone would hide it)
            ours, theirs = one_step["adam"]["state"][0][key], two["adam"]["state"][0][key]
            assert float((ours - theirs).abs().max()) <= 1e-5 * float(theirs.abs().max()), (k, key)
        ours, theirs = one_step["metrics"], reports[0]["metrics"][k]
        assert ours["batch_success"] == theirs["batch_success"]
        for key in ("loss", "target_prob", "nps", "tv"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7), (k, key)

    # free-running: the same seed and global batch from scratch, STEPS steps. Float rounding decides the direction of
    # Adam's steps for texels with near-zero gradients, and JPEG's rounding makes that chaotic, so "float tolerance"
    # here is what one process does to itself when only its thread count changes (the same run at 2 threads)
    reference = _texture(tmp_path / "one.ckpt.pt")
    diff = float((_texture(tmp_path / f"state{STEPS}.pt") - reference).abs().max())
    torch.set_num_threads(2)
    threads = PatchTrainer(PatchConfig(**_config(scenes)), models=[lite0]).prepare()
    for _ in range(STEPS):
        threads.step()
    torch.set_num_threads(1)
    own = float((threads.texture.detach() - reference).abs().max())
    print(f"after {STEPS} steps, max |patch difference| against 1 process at 1 thread: 2 gloo processes {diff:.2e}, "
          f"1 process at 2 threads {own:.2e}")
    assert diff <= max(FREE_TOL, 2 * own)

    # resume across world sizes: 1 -> 2 (the command line above) and 2 -> 1 (from the 2-process state at step 1)
    resumed = torch.load(tmp_path / "resumed.ckpt.pt", weights_only=True)
    assert resumed["step"] == STEPS and float((resumed["texture"] - reference).abs().max()) <= FREE_TOL
    assert (tmp_path / "resumed.png").is_file() and (tmp_path / "resumed.patch.json").is_file()
    assert json.loads((tmp_path / "resumed.patch.json").read_text())["distributed"] == {"world_size": 2,
                                                                                       "backend": "gloo"}
    shutil.copyfile(tmp_path / "state1.pt", tmp_path / "back.ckpt.pt")
    back = train_patch(_config(scenes, out=str(tmp_path / "back.png")), resume=True, models=[lite0])
    assert back.step == STEPS and "distributed" not in back.meta
    after = _texture(tmp_path / "back.ckpt.pt")
    assert float((after - _texture(tmp_path / f"state{STEPS}.pt")).abs().max()) <= FREE_TOL
    assert not (tmp_path / "refused.png").exists() and not (tmp_path / "mismatch.png").exists()


def test_rank_rows_cover_the_batch_and_weight_the_average():
    from patchlab.patch.distributed import RankGroup

    for world in (1, 2, 3, 4):
        for batch in range(world, 11):
            groups = [RankGroup(rank=r, world=world) for r in range(world)]
            rows = [g.rows(batch) for g in groups]
            assert [i for r in rows for i in range(batch)[r]] == list(range(batch))
            assert max(r.stop - r.start for r in rows) - min(r.stop - r.start for r in rows) <= 1
            assert sum(g.share(batch) for g in groups) == pytest.approx(1.0)


def test_distributed_outside_torchrun_is_one_clear_error(scenes, tmp_path, monkeypatch):
    from patchlab.cli import main

    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert main(_cli_args(scenes, tmp_path / "x.png")) == 2
    monkeypatch.setenv("WORLD_SIZE", "2")  # started by torchrun, but without --distributed
    assert main(_cli_args(scenes, tmp_path / "x.png")[:-1]) == 2
    assert not (tmp_path / "x.png").exists()


def test_two_machine_command_with_c10d_rendezvous(scenes, tmp_path):
    """docs/distributed.md's two-machine command, both "machines" on localhost: two torchrun agents meet at one
    c10d rendezvous endpoint and run the real command line, one process each."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
             "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=patchlab-test", "-m", "patchlab",
             *_cli_args(scenes, tmp_path / "two.png")]
    agents = [subprocess.Popen(agent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
              for _ in range(2)]
    outputs = [a.communicate(timeout=600) for a in agents]
    assert [a.returncode for a in agents] == [0, 0], [err[-2000:] for _, err in outputs]
    summaries = [line for out, _ in outputs for line in out.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # one rank 0 across both machines
    meta = json.loads((tmp_path / "two.patch.json").read_text())
    assert meta["distributed"] == {"world_size": 2, "backend": "gloo"} and meta["steps"] == STEPS


@pytest.mark.benchmark  # a measurement for docs/distributed.md, run by `make bench`
def test_divergence_table(scenes, lite0, tmp_path, one_thread):
    """docs/distributed.md's table: max |patch difference| after each of 6 free-running steps, 2 processes vs 1
    process (one thread each), beside 1 process at 1 thread vs 2 threads. Prints the table; asserts that every
    2-process step replays on 1 process to float tolerance (so any growth comes from the free run, not the split)."""
    from patchlab.patch import PatchConfig
    from patchlab.patch.train import PatchTrainer

    steps = 6
    config = PatchConfig(**_config(scenes, patch_size=32, steps=steps))
    _two_processes(tmp_path, {"config": _config(scenes, patch_size=32, steps=steps), "cli": []})
    one, other = (PatchTrainer(config, models=[lite0]).prepare() for _ in range(2))
    rows = {"1 vs 2 threads, one process": [], "2 processes vs 1 (one thread each)": []}
    for k in range(1, steps + 1):
        one.step()
        torch.set_num_threads(2)
        other.step()
        torch.set_num_threads(1)
        two = torch.load(tmp_path / f"state{k}.pt", weights_only=True)["texture"]
        rows["1 vs 2 threads, one process"].append(float((one.texture - other.texture).detach().abs().max()))
        rows["2 processes vs 1 (one thread each)"].append(float((one.texture.detach() - two).abs().max()))
    print("\n| step | " + " | ".join(str(k) for k in range(1, steps + 1)) + " |")
    for name, diffs in rows.items():
        print(f"| {name} | " + " | ".join(f"{d:.1e}" for d in diffs) + " |")
    replay = PatchTrainer(config, models=[lite0]).prepare()
    for k in range(steps):
        mine, theirs = _replay(replay, tmp_path, k)
        assert float((mine["texture"] - theirs["texture"]).abs().max()) <= STEP_TOL, k
