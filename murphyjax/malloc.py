"""glibc malloc settings for XLA:CPU: keep a step's large buffers mapped from one step to the next.

XLA:CPU allocates each execution's temp buffer (1.16 GB for a SmolLM2-135M SFT step at batch 4 x 128,
about 2.4 GB for a DPO step on 8 x 128 tokens) with ``posix_memalign`` from its worker threads, and frees
it at the end of the step. Two glibc behaviours then make every step map the buffer afresh, so that the
kernel zero-fills it page by page:

- worker threads allocate from per-thread arenas, which ``mmap`` any chunk larger than their 64 MB
  heaps and ``munmap`` it on free, whatever ``M_MMAP_MAX`` says (that bound binds the main arena only);
- the main arena gives a freed top chunk back to the OS once it exceeds ``M_TRIM_THRESHOLD`` (2 GiB
  with ``glibc.malloc.trim_threshold=2147483647``, the largest positive ``int`` that ``mallopt`` takes).

Measured on 2 cores (SmolLM2-135M, float32): the SFT step page-faulted 1.16 GB per step with
``mmap_max=0:trim_threshold=2147483647`` and 0 with ``arena_max=1`` added; the DPO step faulted 2.4 GB
(4 s of system time) per step with either of those and 0 only with one arena and trimming off, which
took it from 11-12 s to 8.0-8.3 s.

``tune_malloc()`` sets one arena, no mmap and no trimming with ``mallopt`` (the ``murphyjax`` command
does so at start). For any process, PyTorch included, the environment equivalent is the variable
GLIBC_TUNABLES set to the string ``GLIBC_TUNABLES`` below (trimming above 1 TiB, i.e. never in practice).
The cost: freed memory stays with the process instead of going back to the OS (its resident size stays
at its peak), and threads share one allocator lock.
"""

from __future__ import annotations

import ctypes
import platform

GLIBC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776:glibc.malloc.arena_max=1"
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # <malloc.h>


def tune_malloc() -> bool:
    """One malloc arena, no mmap for large chunks, no trimming (``mallopt``; see the module docstring).

    Call it first thing in a process, before JAX runs anything: glibc fixes the number of arenas the
    first time a second thread allocates, and threads keep the arena they got. Returns True when the
    settings were applied, False where the C library is not glibc (macOS, musl: nothing to do).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # M_TRIM_THRESHOLD -1: "disables trimming completely" (mallopt(3))
    return all(mallopt(k, v) == 1 for k, v in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
