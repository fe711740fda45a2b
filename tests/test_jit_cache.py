"""hats' numba pixel-tree functions are compiled once and then loaded from numba's on-disk cache by every new
process (skylake.jit_cache): each worker and each ``skylake calibrate`` paid ~2.3 s compiling them."""

from __future__ import annotations

import json
import subprocess
import sys

#: A new process aligning two pixel trees, as a calibration's plan does, and reporting numba's cache use.
ALIGN = """
import json
from skylake.jit_cache import cache_hats_jit
n = cache_hats_jit()
assert cache_hats_jit() == n  # once per process
from hats.pixel_math import HealpixPixel
from hats.pixel_tree import pixel_alignment
from hats.pixel_tree.pixel_alignment import align_with_mocs
from hats.pixel_tree.pixel_tree import PixelTree
a = PixelTree.from_healpix([HealpixPixel(3, i) for i in range(10)])
b = PixelTree.from_healpix([HealpixPixel(2, i) for i in range(5)])
mapping = align_with_mocs(a, b, None, None).pixel_mapping
hits = sum(sum(f.stats.cache_hits.values()) for f in vars(pixel_alignment).values() if hasattr(f, "stats"))
print(json.dumps({"cached": n, "hits": hits, "rows": len(mapping)}))
"""


def _run() -> dict:
    out = subprocess.run([sys.executable, "-c", ALIGN], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_new_process_loads_hats_alignment_from_the_cache():
    first = _run()  # compiles (or loads what an earlier process left)
    second = _run()
    assert first["cached"] >= 4 and second["cached"] == first["cached"]
    assert second["hits"] >= 1, second  # the alignment's code came from disk, not the compiler
    assert first["rows"] == second["rows"] == 10  # and aligns as before: each order-3 pixel in its order-2 one


#: A new process measuring apertures (skylake.frame.apertures) and reporting numba's cache use.
APERTURES = """
import json
import numpy as np
from skylake.frame.apertures import _walk, circle_sums
sums = circle_sums(np.ones((40, 40), np.float32), np.array([20.0]), np.array([20.0]), [3.0], (8.0, 12.0), 1.0, 0.0)
print(json.dumps({"hits": sum(_walk.stats.cache_hits.values()), "sky": float(sums.sky_pixels[0])}))
"""


def test_a_new_process_loads_the_aperture_kernel_from_the_cache():
    """skylake's own numba kernel (the apertures in one visit) is compiled once, then loaded by each process."""
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", APERTURES], capture_output=True, text=True, check=True, timeout=120)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[1]["hits"] >= 1, runs
    assert runs[0]["sky"] == runs[1]["sky"] == 240.0


def test_a_function_numba_cannot_cache_still_runs():
    """Where numba finds no cache directory (here: a function with no source file), on_disk leaves the
    function compiling in the process instead of failing at import."""
    import numba

    from skylake.jit_cache import on_disk

    namespace: dict = {}
    exec("def twice(x):\n    return 2 * x\n", namespace)  # no file: numba has no locator for it
    twice = on_disk(numba.njit(namespace["twice"]))
    assert twice(21) == 42
