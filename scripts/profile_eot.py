"""Per-piece CPU cost of one `print`-preset EOT step (forward + backward), beside the bare model pass.

Batch 8, 224 px scenes from the shared ImageNet sample, a 224 px patch at 10% area, efficientnet_lite0, CPU. Each
piece runs forward and backward on its own input (a leaf that needs grad), with the step's own draws, and is timed
in this process's CPU seconds (time.process_time: robust to other load on a shared machine), best of --repeats.

    OMP_WAIT_POLICY=PASSIVE python scripts/profile_eot.py --threads 1 2 --repeats 7
"""

from __future__ import annotations

import argparse
import time

import torch


def _best_cpu(fn, repeats: int) -> float:
    fn()  # warm-up (allocator, kernels, caches)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def pieces(eot, patch, scenes, params, model):
    """name -> a closure running that piece forward and backward on the step's own intermediate input."""
    import kornia

    from patchlab.eot.transforms import EOT

    frames = eot.place(patch, scenes, params)[0].detach()
    lit = eot.photometric(frames, params).detach()
    c = eot.config

    def fwd_bwd(f, x):
        def run():
            leaf = x.detach().requires_grad_(True)
            out = f(leaf)
            out.backward(torch.ones_like(out))
        return run

    def place():
        p = patch.detach().requires_grad_(True)
        out = eot.place(p, scenes, params)[0]
        out.backward(torch.ones_like(out))

    def gaussian(x):
        cam = EOT(c.replace(motion_blur_p=0.0, noise=0.0, jpeg_p=0.0))
        return cam.camera(x, params)

    def motion(x):
        cam = EOT(c.replace(blur_sigma=(0.0, 0.0), noise=0.0, jpeg_p=0.0))
        return cam.camera(x, params)

    def noise(x):
        cam = EOT(c.replace(blur_sigma=(0.0, 0.0), motion_blur_p=0.0, jpeg_p=0.0))
        return cam.camera(x, params)

    def jpeg(x):
        cam = EOT(c.replace(blur_sigma=(0.0, 0.0), motion_blur_p=0.0, noise=0.0))
        return cam.camera(x, params)

    def kornia_jpeg(x):
        idx = params.jpeg_on.nonzero()[:, 0]
        coded = kornia.enhance.jpeg_codec_differentiable(x[idx], params.jpeg_quality[params.jpeg_on])
        return x.index_copy(0, idx, coded.clamp(0, 1))

    def whole():
        p = patch.detach().requires_grad_(True)
        out = eot(p, scenes, 0.1, None, params=params).images
        out.backward(torch.ones_like(out))

    def bare():
        x = lit.detach().requires_grad_(True)
        model(x).log_softmax(-1)[:, 859].sum().backward()

    return {"placement": place, "photometric": fwd_bwd(lambda x: eot.photometric(x, params), frames),
            "gaussian blur": fwd_bwd(gaussian, lit), "motion blur": fwd_bwd(motion, lit),
            "sensor noise": fwd_bwd(noise, lit), "jpeg (as EOT runs it)": fwd_bwd(jpeg, lit),
            "jpeg (kornia)": fwd_bwd(kornia_jpeg, lit), "whole EOT": whole, "bare lite0 fwd+bwd": bare}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=8)  # a draw with JPEG on 4 of 8 samples (its expected share)
    args = ap.parse_args()

    from patchlab.data import shared_data_dir
    from patchlab.eot import EOT
    from patchlab.models import load_model
    from patchlab.models.classify import load_batch

    files = sorted((shared_data_dir() / "imagenet-sample").iterdir())[::50][:8]
    scenes = load_batch(files, 224)
    patch = torch.rand(4, 224, 224, generator=torch.Generator().manual_seed(args.seed))
    patch[3] = 1
    eot = EOT("print")
    params = eot.sample(8, 224, 0.1, torch.Generator().manual_seed(args.seed))
    model = load_model("efficientnet_lite0", "cpu")
    print(f"jpeg on {int(params.jpeg_on.sum())}/8, motion blur on {int(params.motion_on.sum())}/8; "
          f"load {open('/proc/loadavg').read().split()[0]}")
    table = {}
    for t in args.threads:
        torch.set_num_threads(t)
        for name, fn in pieces(eot, patch, scenes, params, model).items():
            table.setdefault(name, {})[t] = _best_cpu(fn, args.repeats) * 1000
    print(f"{'piece (fwd+bwd)':24s}" + "".join(f"{f'CPU ms, {t} thr':>15s}" for t in args.threads))
    for name, row in table.items():
        print(f"{name:24s}" + "".join(f"{row[t]:15.1f}" for t in args.threads))
    for t in args.threads:
        print(f"{t} thread(s): whole EOT / bare = {table['whole EOT'][t] / table['bare lite0 fwd+bwd'][t]:.2f}; "
              f"(EOT + bare) / bare = {1 + table['whole EOT'][t] / table['bare lite0 fwd+bwd'][t]:.2f}")


if __name__ == "__main__":
    main()
