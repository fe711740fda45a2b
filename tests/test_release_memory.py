"""skylake.runtime.release_memory hands freed heap back: after hundreds of tasks a worker's RSS is what
it holds, not the leftovers of their peaks (the objects and maps tasks call it as they end)."""

from __future__ import annotations

import platform

import numpy as np
import psutil
import pytest

from skylake.runtime import release_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_blocks_go_back_to_the_system():
    proc = psutil.Process()
    keep, big = [], []
    for _ in range(400):
        big.append(np.ones(100_000 // 8))  # 100 kB, written: below glibc's mmap threshold, on the heap
        keep.append(bytes(2000))  # a block after each: the freed ones are holes, not the heap's top
    before = proc.memory_info().rss
    del big
    freed = proc.memory_info().rss
    release_memory()
    after = proc.memory_info().rss
    assert before - freed < 2e6  # free() alone keeps the 40 MB in the process
    assert freed - after > 5e6
    assert len(keep) == 400
