"""Shared fixtures: real models and real images, loaded once per session.

Tests that need the shared data folder use the `shared_data` fixture (or one built on it). When the folder is
missing they skip, and a one-line banner at the top of the run says how many and why; with CI=true or
PATCHLAB_REQUIRE_DATA=1 a missing folder is instead one error that fails the run, so CI cannot go green by
skipping the headline checks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from patchlab.data import shared_data_dir

# `make test` runs two pytest-xdist workers: each gets its share of the cores, so torch's thread pools do not
# oversubscribe them (subprocesses the tests start choose their own)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _WORKERS))

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
_SKIPPED_FOR_DATA = pytest.StashKey[tuple]()


def data_required() -> bool:
    """CI=true (GitHub, GitLab and most CI set it) or PATCHLAB_REQUIRE_DATA=1: missing data fails the run."""
    truthy = ("1", "true", "yes")
    return (os.environ.get("CI", "").strip().lower() in truthy
            or os.environ.get("PATCHLAB_REQUIRE_DATA", "").strip().lower() in truthy)


def _missing_data() -> tuple[str, str] | None:
    """(reason, the fixture whose users cannot run) when part of the shared data is missing, else None."""
    root = shared_data_dir()
    if root is None:
        return ("shared data not found (set PATCHLAB_SHARED_DATA to a folder holding imagenet-sample/ and mnist/, "
                "or put it at ../shared/data beside the checkout)", "shared_data")
    if not (root / "mnist").is_dir():
        return f"shared data at {root} has no mnist/ folder", "mnist_dir"
    return None


def _xdist_controller(config: pytest.Config) -> bool:
    """The process that hands tests to pytest-xdist workers (`make test` runs `-n 2`): it collects nothing itself."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist the workers collect, out of sight: the controller says what missing data means before they start
    (under CI one error line; otherwise the banner, the skips counted in the summary)."""
    missing = _missing_data()
    if missing is None or not _xdist_controller(config):
        return
    if data_required():
        raise pytest.UsageError(f"patchlab: {missing[0]}; the tests that need it cannot run "
                                f"(CI=true or PATCHLAB_REQUIRE_DATA=1 makes this an error instead of skips)")
    config.stash[_SKIPPED_FOR_DATA] = (missing[0], -1, -1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = _missing_data()
    if missing is None:
        return
    reason, fixture = missing
    needing = [it for it in items if fixture in getattr(it, "fixturenames", ())]
    if needing and data_required():
        raise pytest.UsageError(f"patchlab: {reason}; {len(needing)} of the {len(items)} selected tests need it "
                                f"(CI=true or PATCHLAB_REQUIRE_DATA=1 makes this an error instead of skips)")
    config.stash[_SKIPPED_FOR_DATA] = (reason, len(needing), len(items))


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    """The banner: printed right after collection, before any test runs, also under -q."""
    reason, skipped, total = config.stash.get(_SKIPPED_FOR_DATA, ("", 0, 0))
    if not skipped:
        return []
    count = "the tests that need it" if skipped < 0 else f"{skipped} of {total} tests"
    return [f"patchlab: {reason}: {count} will be SKIPPED "
            f"(CI=true or PATCHLAB_REQUIRE_DATA=1 turns this into an error)"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """The xdist controller's banner, first thing, also under -q (it has no collection of its own to report on)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if _xdist_controller(session.config) and reporter is not None:
        for line in pytest_report_collectionfinish(session.config):
            reporter.write_line(line)


class WriteGuard:
    """Records files this process opens for writing under `root`, except in the allowed folders (an audit hook:
    it sees Python-level opens, including PIL, torch, matplotlib and Playwright's screenshots, but not files written
    by C code such as cv2.imwrite or by subprocesses)."""

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def __init__(self, root: Path, allowed: list[str]):
        self.root = str(root) + os.sep
        self.allowed = tuple(str(root / a) + os.sep for a in allowed)
        self.written: set[str] = set()
        self.active = True

    def __call__(self, event: str, args: tuple) -> None:
        if event != "open" or not self.active:
            return
        try:
            path, mode, flags = args
            if isinstance(path, int) or not (any(c in (mode or "") for c in "wax+") or (flags or 0) & self.WRITE_FLAGS):
                return
            path = os.path.abspath(os.fsdecode(path))
            rel = os.path.relpath(path, self.root)
            if (path.startswith(self.root) and not path.startswith(self.allowed)
                    and f"{os.sep}__pycache__{os.sep}" not in path
                    and not rel.startswith("pytest-cache-files-")):  # pytest's own cache, made then renamed
                self.written.add(rel)
        except Exception:  # noqa: BLE001 - an audit hook must never break the open() it watches
            pass


_docs_shots = os.environ.get("PATCHLAB_DOCS_SCREENSHOTS")  # `make screenshots` refreshes docs/screenshots/
WRITES = WriteGuard(ROOT, ["test-artifacts", ".pytest_cache", ".venv"]
                    + ([_docs_shots.rstrip("/")] if _docs_shots else []))
sys.addaudithook(WRITES)


_WORKERS_WROTE: set[str] = set()  # the xdist controller's collection of its workers' stray writes


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """xdist controller: a worker finished; keep what its guard saw."""
    _WORKERS_WROTE.update(getattr(node, "workeroutput", {}).get("patchlab_written", ()))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Tests write only under test-artifacts/ (or tmp_path): anything else in the checkout fails the run. An xdist
    worker hands its list to the controller, which fails the run."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["patchlab_written"] = sorted(WRITES.written)
        return
    written = WRITES.written | _WORKERS_WROTE
    if written:
        files = ", ".join(sorted(written)[:10])
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"patchlab: tests wrote {len(written)} file(s) outside test-artifacts/: {files} "
                                f"(write under test-artifacts/ or tmp_path)", red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if root is None:
        pytest.skip("shared data (../shared/data with imagenet-sample/) is absent")
    return root


@pytest.fixture(scope="session")
def imagenet_dir(shared_data) -> Path:
    return shared_data / "imagenet-sample"


@pytest.fixture(scope="session")
def mnist_dir(shared_data) -> Path:
    path = shared_data / "mnist"
    if not path.is_dir():
        pytest.skip("shared data has no mnist/ folder")
    return path


@pytest.fixture(scope="session")
def lite0():
    from patchlab.models import load_model

    return load_model("efficientnet_lite0", "cpu")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
