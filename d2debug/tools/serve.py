"""Start the dashboard as a real ``streamlit run app.py`` server on a free port, reached at 127.0.0.1 (for the
browser tests and the benchmark rows that drive a browser), and the flags Debian's headless Chromium needs on a
machine with no network."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Mapping, Optional

from ..errors import D2DebugError

__all__ = ["ROOT", "CHROMIUM", "CHROMIUM_ARGS", "free_port", "streamlit_server"]

ROOT = Path(__file__).resolve().parents[2]  # the checkout, where app.py is
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach Google's hosts and gets refused.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` (an IPv4 address; ``0.0.0.0``: every interface) that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(log_path: Path, timeout_s: float = 120.0, address: str = "127.0.0.1",
                     env: Optional[Mapping[str, str]] = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``streamlit run app.py`` listening on ``address`` (an IPv4 address that covers 127.0.0.1; default
    127.0.0.1, while ``0.0.0.0`` is how a team serves it and turns d2debug's serving policy on) until the block
    ends, with ``env`` added to this process's environment (e.g. ``D2DEBUG_ALLOWED_DIRS``, ``TMPDIR``); its
    output goes to ``log_path``. Yields ``(url, process)`` once ``/_stcore/health`` answers ``ok``; the URL is
    always on 127.0.0.1, so the tests' traffic stays on this machine whatever the address. Raises
    :class:`D2DebugError` with the log's tail if the server never answers."""
    port = free_port(address)
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", address,
             "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise D2DebugError(f"streamlit did not come up: {Path(log_path).read_text()[-500:]}")
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
