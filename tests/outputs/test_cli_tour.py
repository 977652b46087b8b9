"""Issue 21's acceptance: the docs' CLI tour run in one folder as a user would (train -> eval -> breakdown -> print
-> simulate-photo -> photo-eval -> camera record twice -> perturb -> attack --out), at small sizes. After every step,
and again at the end, every file an earlier step wrote must be there byte for byte, unless the user asked for
--force; reruns and cross-command name clashes are refused with one line and change nothing."""

from __future__ import annotations

import json
from pathlib import Path

from .files import snapshot


class Tour:
    """Runs CLI steps in one folder and remembers, by hash, the files each step wrote."""

    def __init__(self, work: Path, cli):
        self.work, self.cli = work, cli
        self.wrote: dict[str, dict[str, str]] = {}
        self.forced: set[str] = set()   # files a --force step was allowed to replace

    def intact(self, when: str) -> None:
        now = snapshot(self.work)
        for step, files in self.wrote.items():
            for name, digest in files.items():
                if name in self.forced:
                    continue
                assert now.get(name) == digest, f"{when}: {name}, written by `{step}`, was changed or removed"
        stray = [n for n in now if ".part." in n]
        assert not stray, f"{when}: temporary files left behind: {stray}"

    def run(self, name: str, *args, expect: int = 0, force: bool = False) -> tuple[str, str, dict[str, str]]:
        before = snapshot(self.work)
        code, out, err = self.cli(*args)
        assert code == expect, f"{name}: exit {code} (expected {expect})\nstderr: {err[-2000:]}"
        after = snapshot(self.work)
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        if force:
            self.forced |= set(changed)
        self.intact(f"after `{name}`")
        if expect == 0:
            self.wrote[name] = changed
        else:
            assert not changed, f"`{name}` was refused but changed {sorted(changed)}"
            lines = [line for line in err.strip().splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("patchlab: error: "), err
        return out, err, changed


def test_cli_tour_in_one_folder_loses_nothing(tmp_path, monkeypatch, builtin_scenes, cli):
    monkeypatch.chdir(tmp_path)
    tour = Tour(tmp_path, cli)
    scenes = str(builtin_scenes)
    scene = str(sorted(builtin_scenes.iterdir())[0])
    cpu = ("--device", "cpu")
    train = ("patch", "train", "--target", "toaster", "--images", scenes, "--area", "0.1", "--size", "32",
             "--steps", "2", "--batch", "2", "--checkpoint-every", "1", *cpu, "--json", "--out", "banana.png")

    _, _, files = tour.run("patch train", *train)
    assert set(files) == {"banana.png", "banana.patch.json", "banana.ckpt.pt"}
    trained = json.loads(Path("banana.patch.json").read_text())["train_images"]

    out, _, files = tour.run("patch eval", "patch", "eval", "banana.png", "--images", scenes, "--areas", "0.1",
                             "--limit", "2", "--no-baselines", *cpu, "--json")
    assert set(files) == {"banana.eval.json", "banana.eval.png"}
    assert json.loads(out)["skipped_training_images"] == len(trained) > 0

    _, _, files = tour.run("patch breakdown", "patch", "breakdown", "banana.png", "--images", scenes, "--draws", "1",
                           "--limit", "2", *cpu, "--json")
    assert files == {}

    # the first case: the sheet of banana.png must not land on banana.png's sidecar
    _, _, files = tour.run("print", "print", "banana.png", "--size-mm", "80", "--out", "banana.pdf", "--json")
    assert set(files) == {"banana.pdf", "banana.sheet.json", "banana.print.png"}

    _, _, files = tour.run("simulate-photo", "simulate-photo", "banana.pdf", "--out", "banana.jpg", "--json")
    assert set(files) == {"banana.jpg", "banana.truth.json"}

    out, _, files = tour.run("photo-eval", "photo-eval", "banana.jpg", "--annotated", "banana-seen.png", *cpu, "--json")
    assert set(files) == {"banana-seen.png"} and json.loads(out)["photos"][0]["kind"] == "patch"

    # the second case: two recordings into the same folder are two runs
    camera = ("camera", "--source", "synthetic:6", "--target", "toaster", "--headless", "--max-frames", "6",
              "--eager", *cpu, "--json", "--record", "rec")
    out, _, files = tour.run("camera (patch)", *camera, "--patch", "banana.png")
    assert {f.split("/", 1)[0] for f in files} == {"rec"} and json.loads(out)["recording"] == str(Path("rec/run-001"))
    out, _, files = tour.run("camera (baseline)", *camera)
    assert all(f.startswith("rec/run-002/") for f in files) and json.loads(out)["recording"] == str(Path("rec/run-002"))
    for run in ("run-001", "run-002"):
        summary = json.loads(Path(f"rec/{run}/summary.json").read_text())
        assert summary["attack"]["frames"] == 6 and summary["recording"] == str(Path("rec") / run)
        assert len(Path(f"rec/{run}/frames.jsonl").read_text().splitlines()) == 6

    _, _, files = tour.run("camera-report", "camera-report", "rec/run-001", "--baseline", "rec/run-002", "--json")
    assert set(files) <= {"rec/run-001/report.json", "rec/run-001/report.png"} and "rec/run-001/report.json" in files

    _, _, files = tour.run("perturb", "perturb", scene, "--steps", "2", "--batch", "2", "--eval-draws", "2",
                           "--out", "banana-adv.png", *cpu, "--json")
    assert set(files) == {"banana-adv.png", "banana-adv.perturb.json"}

    attack = ("attack", scenes, "--attack", "fgsm", "--eps", "2/255", "--limit", "2", *cpu, "--json", "--out", "adv")
    _, _, files = tour.run("attack --out", *attack)
    assert {"adv/run.json", "adv/results.jsonl"} < set(files) and len([f for f in files if f.endswith(".png")]) == 2

    # reruns over their own outputs: refused without --force (or resumed, where the command resumes)
    tour.run("patch train again", *train, expect=2)
    tour.run("patch eval again", "patch", "eval", "banana.png", "--images", scenes, "--areas", "0.1", "--limit", "2",
             "--no-baselines", *cpu, expect=2)
    tour.run("print again", "print", "banana.png", "--size-mm", "80", "--out", "banana.pdf", expect=2)
    tour.run("simulate-photo again", "simulate-photo", "banana.pdf", "--out", "banana.jpg", expect=2)
    tour.run("photo-eval again", "photo-eval", "banana.jpg", "--annotated", "banana-seen.png", *cpu, expect=2)
    tour.run("perturb again", "perturb", scene, "--steps", "2", "--out", "banana-adv.png", *cpu, expect=2)
    tour.run("camera-report again", "camera-report", "rec/run-001", expect=2)
    out, _, files = tour.run("attack again (resumes)", *attack)
    assert files == {} and json.loads(out)["n"] == 2
    tour.run("attack, other settings", *attack[:-2], "--eps", "4/255", "--out", "adv", expect=2)

    # another command's file is never overwritten, --force or not
    _, err, _ = tour.run("perturb over the patch", "perturb", scene, "--steps", "2", "--out", "banana.png", "--force",
                         *cpu, expect=2)
    assert "banana.png is a patch image" in err and "`patchlab patch train`" in err
    _, err, _ = tour.run("chart over the print", "calibrate", "chart", "--out", "banana.pdf", "--force", expect=2)
    assert "written by `patchlab print`" in err
    tour.run("print PNG over the patch", "print", "banana.png", "--out", "other.pdf", "--png", "banana.png",
             "--force", expect=2)
    tour.run("eval JSON over the sidecar", "patch", "eval", "banana.png", "--images", scenes, "--out",
             "banana.patch.json", "--force", *cpu, expect=2)
    tour.run("a preview over the photo", "eot", "preview", "--out", "banana.jpg", "--force", expect=2)
    Path("mine.png").write_bytes(Path(scene).read_bytes())  # the user's own file: patchlab cannot identify it
    tour.wrote["user"] = {"mine.png": snapshot(tmp_path)["mine.png"]}
    _, err, _ = tour.run("preview over the user's file", "eot", "preview", "--out", "mine.png", "--force", expect=2)
    assert "cannot tell what wrote it" in err
    tour.run("attack into a folder of other files", "attack", scenes, "--attack", "fgsm", "--limit", "1", *cpu,
             "--out", "rec", expect=2)

    # --force replaces exactly the command's own outputs; --append extends the latest run
    _, _, files = tour.run("print --force", "print", "banana.png", "--size-mm", "60", "--out", "banana.pdf",
                           "--force", force=True)
    assert set(files) == {"banana.pdf", "banana.sheet.json", "banana.print.png"}
    out, _, files = tour.run("camera --append", *camera, "--append", force=True)
    assert all(f.startswith("rec/run-002/") for f in files)
    assert json.loads(Path("rec/run-002/summary.json").read_text())["attack"]["frames"] == 12
    assert json.loads(Path("rec/run-001/summary.json").read_text())["attack"]["frames"] == 6

    tour.intact("at the end")
