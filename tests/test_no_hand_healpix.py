"""HEALPix and partition-path arithmetic goes through hats: no hand-written ``29 - order`` shifts, and no
``Norder=``/``Npix=`` strings built or parsed outside hats' ``hats.io.paths`` (skylake's one pair of path
helpers, :func:`skylake.lake.hats_meta.pixel_dir` and :func:`~skylake.lake.hats_meta.pixel_of`, wrap it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hats.io import paths
from hats.pixel_math import HealpixPixel

import skylake
from skylake.lake.hats_meta import pixel_dir, pixel_of

PACKAGE = Path(skylake.__file__).parent
PARTITION_KEYS = (f"{paths.PARTITION_ORDER}=", f"{paths.PARTITION_PIXEL}=")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of ``tree`` (prose: they may show a path or a formula)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                out.add(id(first.value))
    return out


def _offences(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """``file:line: what`` of each offending line of ``path`` (named relative to ``root``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    prose = _docstrings(tree)
    out = {}  # an f-string's literal pieces are separate nodes: one report per line and kind
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Sub)
            and isinstance(node.left, ast.Constant)
            and node.left.value == 29
        ):
            out[node.lineno, 0] = "`29 - ...` shift arithmetic (use hats.pixel_math.spatial_index)"
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in prose
            and any(k in node.value for k in PARTITION_KEYS)
        ):
            out[node.lineno, 1] = "a Norder=/Npix= partition path string (use hats_meta.pixel_dir/pixel_of)"
    return [f"{path.relative_to(root)}:{line}: {what}" for (line, _), what in sorted(out.items())]


def test_no_hand_healpix_or_partition_paths():
    offences = [o for f in sorted(PACKAGE.rglob("*.py")) for o in _offences(f)]
    assert not offences, "\n".join(offences)


def test_the_scan_sees_code_not_prose(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""``h >> 2 * (29 - k)`` in dataset/Norder=k/Npix=n"""\n# 29 - k, Norder=\n'
        'shift = 2 * (29 - k)\nrel = f"Norder={k}/Npix={n}"\n'
    )
    assert _offences(sample, tmp_path) == [
        "sample.py:3: `29 - ...` shift arithmetic (use hats.pixel_math.spatial_index)",
        "sample.py:4: a Norder=/Npix= partition path string (use hats_meta.pixel_dir/pixel_of)",
    ]


@pytest.mark.parametrize(
    "order, pixel, rel",
    [
        (5, 1234, "dataset/Norder=5/Dir=0/Npix=1234"),
        (7, 123456, "dataset/Norder=7/Dir=120000/Npix=123456"),
        (0, 11, "dataset/Norder=0/Dir=0/Npix=11"),
        (29, 12 * 4**29 - 1, "dataset/Norder=29/Dir=3458764513820540000/Npix=3458764513820540927"),
    ],
)
def test_pixel_dir_and_pixel_of_are_hats_paths(order, pixel, rel):
    assert pixel_dir(order, pixel) == rel
    hats_file = paths.pixel_catalog_file("/catalog", HealpixPixel(order, pixel), npix_suffix="/")
    assert hats_file.as_posix() == f"/catalog/{rel}"
    assert pixel_of(f"{rel}/batch-1.parquet") == HealpixPixel(order, pixel) == paths.get_healpix_from_path(rel)


@pytest.mark.parametrize(
    "rel",
    [
        "dataset/Norder=5/Dir=0/Npix=1234",  # the directory, not a file in it
        "dataset/Norder=5/Dir=0/Npix=1234/sub/batch.parquet",
        "dataset/Norder=5/Dir=10000/Npix=1234/batch.parquet",  # not the Dir hats gives
        "dataset/Norder=/Dir=0/Npix=1/batch.parquet",
        "dataset/Norder=30/Dir=0/Npix=1/batch.parquet",
        "held/night=2024-01-01.parquet",
        "dataset/_common_metadata",
    ],
)
def test_pixel_of_is_none_off_partitions(rel):
    assert pixel_of(rel) is None
