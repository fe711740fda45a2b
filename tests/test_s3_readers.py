"""Readers on object storage see only commits: on a real S3-compatible server (moto's, started here) a reader
counts the lake's sources and frames again and again while another process commits 20 batches that rewrite the
same partitions (ten nights after a first, each followed by a compaction, which replaces every partition's
files). S3 has no directory to swap, so a reader that listed the partitions could see a merged file beside the
files it replaces; skylake's readers resolve the files of the published version from the commit log instead.
Every count seen is one that some commit produced, and no row is ever read twice.

The rows are SYNTHETIC (skylake.synthetic.detections)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

from skylake.lake import Lake, open_lake
from skylake.testing.s3 import s3_server

WRITER = """
import pathlib, sys, time
import numpy as np
from skylake.lake import Lake
from skylake.lake.compact import compact
from skylake.synthetic.detections import commit_night, random_stars

lake, reads = Lake.open(sys.argv[1]), pathlib.Path(sys.argv[2])


def after_reads(n):  # let the reader read n more times before the next commit (it goes on reading meanwhile)
    target, deadline = int(reads.read_text() or 0) + n, time.monotonic() + 300
    while int(reads.read_text() or 0) < target and time.monotonic() < deadline:
        time.sleep(0.02)


rng = np.random.default_rng(5)
stars = random_stars(300, (10.0, 14.0), (0.0, 3.0), rng)
commit_night(lake, stars, "2026-02-01", 2, rng)
for k in range(10):  # each night adds a file to every partition, and its compaction merges them: a rewrite
    after_reads(READS_PER_COMMIT)
    commit_night(lake, stars, f"2026-02-{k + 2:02d}", 2, rng)
    after_reads(READS_PER_COMMIT)
    compact(lake)
"""
#: Reads between two commits: 20 commits after the first make at least 200 reads while the writer commits.
READS_PER_COMMIT = 10


@pytest.fixture(scope="module")
def s3():
    with s3_server() as endpoint:
        yield endpoint


def _counts(lake, frames: bool = True) -> tuple[int, int | None]:
    """(sources, frames) as a reader sees them (frames None when not asked); a source read twice fails here."""
    ids = lake.read_sources(columns=["source_id"]).column("source_id")
    assert len(set(ids.to_pylist())) == len(ids), "a source was read twice"
    return len(ids), lake.read_frames(columns=["frame_id"]).num_rows if frames else None


@pytest.mark.timeout(1500)  # 200+ reads on the S3 server while 20 commits land: 3-4 min on 2 cores
def test_a_reader_during_20_rewriting_commits_sees_only_committed_counts(s3, tmp_path):
    url = "s3://skylake/readers"
    Lake.init(url)
    reads = tmp_path / "reads"
    reads.write_text("0")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER.replace("READS_PER_COMMIT", str(READS_PER_COMMIT)), url, str(reads)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    reader = Lake.open(url)  # one long-lived reader, as a service's
    try:
        while writer.poll() is None:
            seen.append(_counts(reader, frames=len(seen) % 5 == 0))  # the frames table every fifth read
            reads.write_text(str(len(seen)))
    finally:
        out, err = writer.communicate(timeout=600)
    assert writer.returncode == 0, err
    lake = Lake.open(url)
    versions = lake.log.latest_version()
    assert versions == 21 and lake.log.published_version() == 21
    committed = [_counts(open_lake(url, version=v)) for v in range(1, versions + 1)] + [(0, 0)]
    # each table on its own: a commit may land between a reader's two reads
    strays = [
        (which, c[k])
        for c in seen
        for k, which in enumerate(("sources", "frames"))
        if c[k] is not None and c[k] not in {d[k] for d in committed}
    ]
    counts = sorted({c[0] for c in seen})
    print(f"\n{len(seen)} reads during {versions} commits; source counts seen {counts}")
    assert len(seen) >= 20 * READS_PER_COMMIT and strays == [], strays
