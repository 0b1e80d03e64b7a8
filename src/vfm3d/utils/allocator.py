"""`tune_allocator`: keep large CPU buffers in glibc's heap instead of fresh ``mmap`` pages.

PyTorch on CPU allocates every large tensor through ``malloc``. glibc serves requests above its
mmap threshold (128 KiB, raised dynamically up to 32 MiB) with fresh ``mmap`` pages and returns
them on free, and trims the heap's top whenever more than twice that is free, so a training step
that allocates and frees the same multi-megabyte buffers every iteration (optimizer temporaries,
bf16 weight casts, weight gradients, activations) pays page faults and zeroing on each. Raising
``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` keeps those pages for reuse: host memory is then
held the way PyTorch's CUDA caching allocator holds device memory (peak RSS unchanged, but what
is freed is kept by the process rather than returned to the system).

Measured on the probe's "small" training step (2 threads, `benchmarks/bench_probe.py`): the
forward + backward takes about half the time (page faults were ~half of it), the whole step
~0.3x less in fp32 and bf16. It is a process-wide setting that speeds up any PyTorch code in the
process (a reference implementation's too: the benchmark reports the ratio with both sides'
allocator equalised as well). It is applied by `vfm3d`'s command-line entry point and when a
`vfm3d.probe.ProbeModel` is built — never on import. ``VFM3D_TUNE_MALLOC=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Requests below this are served from the heap (and never trimmed below it).
THRESHOLD_BYTES = 1 << 30


_applied: set[int] = set()


def tune_allocator(threshold: int = THRESHOLD_BYTES) -> bool:
    """Raise glibc's mmap and trim thresholds to ``threshold`` bytes; returns whether it applied
    (False off Linux/glibc, or when ``VFM3D_TUNE_MALLOC=0``). Applying it again is a no-op."""
    if os.environ.get("VFM3D_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if threshold in _applied:
        return True
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, threshold))
    if ok:
        _applied.add(threshold)
    return ok
