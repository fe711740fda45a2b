"""The command line as users and cron run it: the demo's verdict and existing clusters (the demo itself runs in
tests/test_readme.py, beside the README blocks that read its lake)."""

from __future__ import annotations

import pytest
from conftest import run_cli

from skylake.lake import Lake


def test_demo_verdict_names_the_first_failed_check():
    from skylake.demo import Check, verdict

    assert verdict([Check("a", 1, "1", True)]) == (0, "demo: PASS")
    code, line = verdict(
        [Check("a", 1, "1", True), Check("zeropoints off", 0.0312, "< 0.02", False), Check("b", 2, "> 3", False)]
    )
    assert code == 1 and line == "demo: FAIL: zeropoints off 0.0312 vs < 0.02"


@pytest.mark.realdata
def test_ingest_on_an_existing_cluster(tmp_path, skycamz_files, dask_client):
    address = dask_client.scheduler.address
    out = run_cli(
        "--log-level",
        "INFO",
        "ingest",
        str(tmp_path / "lake"),
        *map(str, skycamz_files[:3]),
        "--create",
        "--pipeline",
        "skycamz",
        "--scheduler",
        address,
        "--no-progress",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].startswith("3 of 3 files ingested")
    assert Lake.open(tmp_path / "lake").read_frames(columns=["frame_id"]).num_rows == 3


def test_a_reader_that_stops_reading_ends_the_output_quietly(tmp_path):
    """``skylake status LAKE | head``: when the reader has gone, the command ends without a traceback or any word on
    stderr, with the exit code of a Unix tool killed by SIGPIPE (141)."""
    import os
    import subprocess
    import sys

    from skylake.errors import EXIT_BROKEN_PIPE
    from skylake.lake import Lake

    Lake.init(tmp_path / "lake")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        run = subprocess.run(
            [sys.executable, "-m", "skylake.cli", "status", str(tmp_path / "lake")],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert run.returncode == EXIT_BROKEN_PIPE == 141 and run.stderr == ""


def test_a_lake_on_s3_without_the_extra_is_refused_in_one_line():
    """``skylake init s3://bucket/x`` where s3fs is not installed: one line naming the extra to install, exit 2
    (s3fs is installed here: a fresh interpreter is made unable to import it, as without the extra)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class NoS3fs:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 's3fs' or name.startswith('s3fs.'):\n"
        "            raise ImportError(\"No module named 's3fs'\")\n"
        "sys.meta_path.insert(0, NoS3fs())\n"
        "from skylake.cli import main\n"
        "sys.exit(main(['init', 's3://bucket/x']))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == "", run.stdout + run.stderr
    assert run.stderr.count("\n") == 1 and 'pip install "skylake[s3]"' in run.stderr, run.stderr
    assert run.stderr.startswith("skylake: error: s3://bucket/x: a lake on s3:// needs the skylake[s3] extra")


def test_the_command_ends_its_process_as_a_normal_exit_would(tmp_path):
    """``skylake.cli.run`` (the console command) ends the process without the interpreter's native teardown, which
    aborts a finished command now and then (Arrow's thread pools; exit -6 in CI): what a normal exit does before that
    teardown still happens. A non-daemon thread is waited for, atexit handlers run, stdout arrives whole, and the
    exit codes are main's (0; 2 for a usage error, as argparse says)."""
    import subprocess
    import sys

    from skylake.lake import Lake

    Lake.init(tmp_path / "lake")
    code = (
        "import atexit, sys, threading, time\n"
        "from skylake.cli import run\n"
        "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
        f"threading.Thread(target=lambda: (time.sleep(0.5), open({str(tmp_path / 'late')!r}, 'w').close())).start()\n"
        "sys.argv = ['skylake', *sys.argv[1:]]\n"
        "run()\n"
    )
    ok = subprocess.run(
        [sys.executable, "-c", code, "status", str(tmp_path / "lake")], capture_output=True, text=True, timeout=120
    )
    expected = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from skylake.cli import main; sys.exit(main(sys.argv[1:]))",
            "status",
            str(tmp_path / "lake"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and ok.stderr == "atexit ran\n", ok.stderr
    assert ok.stdout == expected.stdout and ok.stdout.startswith("lake ") and ok.stdout.count("\n") == 3
    assert (tmp_path / "late").exists()
    usage = subprocess.run([sys.executable, "-c", code, "status"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "usage: skylake status" in usage.stderr and "atexit ran" in usage.stderr
