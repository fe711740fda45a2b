"""A real S3-compatible server for tests and benchmarks: moto's standalone server in its own process.

The server speaks the S3 HTTP API on ``127.0.0.1``, including conditional writes (``If-None-Match``,
``If-Match``), and keeps its objects in memory. skylake reaches it exactly as it reaches AWS: through the standard
environment variables, which :func:`s3_server` sets for the processes it runs in and starts.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

__all__ = ["s3_server", "S3_ENV"]

#: The environment a client of the server needs (credentials are placeholders moto accepts).
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "skylake-test",
    "AWS_SECRET_ACCESS_KEY": "skylake-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def s3_server(bucket: str = "skylake", timeout: float = 30.0):
    """Run moto's S3 server for the duration of the block, with ``bucket`` created.

    Parameters
    ----------
    bucket : str
        A bucket to create.
    timeout : float
        How long to wait for the server to answer [s].

    Yields
    ------
    str
        The endpoint URL; ``os.environ`` holds it as ``AWS_ENDPOINT_URL`` (with :data:`S3_ENV`) meanwhile.

    Raises
    ------
    RuntimeError
        The server did not answer within ``timeout`` (or its process ended).
    """
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in (*S3_ENV, "AWS_ENDPOINT_URL")}
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start on {endpoint}") from None
                time.sleep(0.1)
        os.environ.update(S3_ENV, AWS_ENDPOINT_URL=endpoint)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        with contextlib.suppress(ImportError):
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
