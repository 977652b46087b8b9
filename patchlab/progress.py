"""The progress callback every long-running library function takes: `progress(step, total, metrics)`.

The library never prints; the CLI draws a rich progress bar from these calls, the app a Streamlit one.
"""

from __future__ import annotations

from typing import Callable

ProgressFn = Callable[[int, int, dict], None]
