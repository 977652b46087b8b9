"""Where cells run: Ray tasks (each with the grid's resources; a local Ray started here, or an existing cluster at
`address`), or a local process pool with the same cell function, hence the same outputs. Both yield each cell's
result as it finishes, so the caller can report progress; results are also written by the cells themselves, so a
kill loses only the cells in flight."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Iterator

from patchlab.errors import PatchlabError

EXECUTORS = ("auto", "ray", "pool")


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def choose_executor(executor: str, address: str | None) -> str:
    if executor not in EXECUTORS:
        raise PatchlabError(f"unknown executor '{executor}' (choose from {', '.join(EXECUTORS)})")
    if executor == "auto":
        return "ray" if ray_available() or address else "pool"
    if executor == "ray" and not ray_available():
        raise PatchlabError("executor=ray needs Ray: pip install 'patchlab[cluster]'")
    if executor == "pool" and address:
        raise PatchlabError("address= is a Ray cluster address; it needs executor=ray (or executor=auto)")
    return executor


def run_pool(cells: list[dict], grid: dict, out: str, workers: int | None = None) -> Iterator[dict]:
    """Cells on a local process pool (spawned workers: no forked OpenMP/thread state)."""
    from patchlab.sweep.cell import run_cell

    threads = max(1, int(grid.get("cpus_per_cell", 1)))
    workers = workers or max(1, min(len(cells), (os.cpu_count() or 1) // threads))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = {pool.submit(run_cell, cell, grid, out, threads) for cell in cells}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()


def run_ray(cells: list[dict], grid: dict, out: str, address: str | None = None, workers: int | None = None,
            ) -> Iterator[dict]:
    """Cells as Ray tasks with `num_cpus=cpus_per_cell, num_gpus=gpus_per_cell`. Without `address` a local Ray is
    started (and stopped at the end) with `workers` CPUs; with one, the driver joins that cluster (where patchlab
    must be installed and the patch and images must be at the same paths, e.g. on a shared file system). A Ray
    already initialised in this process is used as it is."""
    import ray

    from patchlab.sweep.cell import run_cell

    started = False
    if not ray.is_initialized():
        kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        if address:
            kwargs["address"] = address
        else:  # "local": a new instance even when another Ray runs on this machine (ray.init() would join it)
            kwargs.update(address="local", num_cpus=workers or os.cpu_count() or 1)
            # local workers import this checkout's patchlab even when it is not installed
            path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), _package_root()) if p)
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path, "OMP_WAIT_POLICY": "PASSIVE"}}
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            hint = "a cluster with token authentication also needs its token: RAY_AUTH_TOKEN, see `ray get-auth-token`"
            raise PatchlabError(f"cannot reach the Ray cluster at address={address} ({exc}; {hint})") from None
        started = True
    try:
        task = ray.remote(run_cell).options(num_cpus=float(grid.get("cpus_per_cell", 1)),
                                            num_gpus=float(grid.get("gpus_per_cell", 0)), max_retries=1)
        threads = max(1, int(grid.get("cpus_per_cell", 1)))
        pending = [task.remote(cell, grid, out, threads) for cell in cells]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # a library error in a cell: its one line
                        if isinstance(exc.cause, PatchlabError):
                            raise exc.cause from None
                        raise
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()


def _package_root() -> str:
    import patchlab

    return os.path.dirname(os.path.dirname(os.path.abspath(patchlab.__file__)))
