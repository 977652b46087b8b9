"""Keep freed tensor memory in the process instead of handing it back to the kernel (glibc only).

glibc serves every allocation above its mmap threshold (128 KiB, adapting up to 32 MiB) with a fresh mmap, and
trims the heap top back to the kernel on free. A CPU forward+backward allocates and frees batch-sized activations
(up to ~40 MB for EfficientNet-Lite at batch 8) dozens of times per step, so every step page-faults and zeroes them
again: measured on the project's 2-core VM, 20-25 % of a forward+backward's CPU time (340 -> 270 ms CPU per batch-8
step of Lite0). Raising the mmap and trim thresholds keeps that memory mapped and reused, which is what jemalloc or
tcmalloc do for PyTorch on CPU. The resident size stays at its peak instead of shrinking between steps.

Set PATCHLAB_MALLOC=default to leave glibc's settings alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 1 << 30       # allocations below 1 GiB come from the heap
TRIM_THRESHOLD = (1 << 31) - 1  # never trim the heap top back to the kernel

tuned = False


def tune_malloc() -> bool:
    """Apply the thresholds once; True when glibc accepted them."""
    global tuned
    if tuned or os.environ.get("PATCHLAB_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # some glibc versions cap the mmap threshold at half their heap size (32 MiB on 64-bit): fall back to that
    mapped = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) or bool(mallopt(M_MMAP_THRESHOLD, 32 << 20))
    tuned = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and mapped
    return tuned
