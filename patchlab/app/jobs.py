"""Background jobs for the app: a worker thread per job, progress in a lock-protected snapshot.

A Streamlit script rerun (any widget click) must not kill a long optimisation, so the work runs in a daemon
thread that never calls `st.*`. The page keeps the `Job` in its own `st.session_state`, so two browser sessions
never see each other's jobs; a fragment polls `job.snapshot()` to draw progress.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn

# fn(progress, stop) -> result; progress(step, total, metrics); stop is a threading.Event the work checks.
JobFn = Callable[[ProgressFn, threading.Event], Any]

PENDING, RUNNING, DONE, STOPPED, FAILED = "pending", "running", "done", "stopped", "failed"


@dataclass(frozen=True)
class JobSnapshot:
    name: str
    state: str
    step: int
    total: int
    metrics: dict
    history: list[tuple[int, dict]]
    result: Any
    error: str | None
    seconds: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0

    @property
    def active(self) -> bool:
        return self.state in (PENDING, RUNNING)


@dataclass
class Job:
    """One piece of work in its own thread. Create with `Job.start(name, fn)`."""

    name: str
    fn: JobFn
    stop_event: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _state: str = PENDING
    _step: int = 0
    _total: int = 0
    _metrics: dict = field(default_factory=dict)
    _history: list = field(default_factory=list)
    _result: Any = None
    _error: str | None = None
    _started: float = 0.0
    _ended: float | None = None
    _thread: threading.Thread | None = None

    @classmethod
    def start(cls, name: str, fn: JobFn) -> "Job":
        job = cls(name, fn)
        job._started = time.perf_counter()
        job._state = RUNNING
        job._thread = threading.Thread(target=job._run, name=f"patchlab-job-{name}", daemon=True)
        job._thread.start()
        return job

    def _progress(self, step: int, total: int, metrics: dict | None = None) -> None:
        clean = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in (metrics or {}).items()}
        with self._lock:
            self._step, self._total, self._metrics = int(step), int(total), clean
            self._history.append((int(step), clean))

    def _run(self) -> None:
        try:
            result = self.fn(self._progress, self.stop_event)
        except PatchlabError as exc:
            self._finish(FAILED, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - shown on the page as one line; the trace goes to the server log
            traceback.print_exc()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._finish(FAILED, None, f"{type(exc).__name__}: {first}")
        else:
            self._finish(STOPPED if self.stop_event.is_set() else DONE, result, None)

    def _finish(self, state: str, result: Any, error: str | None) -> None:
        with self._lock:
            self._state, self._result, self._error, self._ended = state, result, error, time.perf_counter()

    def stop(self) -> None:
        """Ask the work to stop at its next check; it keeps its checkpoint so it can be resumed."""
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.snapshot().active

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            end = self._ended if self._ended is not None else time.perf_counter()
            return JobSnapshot(self.name, self._state, self._step, self._total, dict(self._metrics),
                               list(self._history), self._result, self._error, end - self._started)
