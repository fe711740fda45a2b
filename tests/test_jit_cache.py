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
