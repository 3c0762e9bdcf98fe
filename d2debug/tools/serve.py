"""Start the dashboard as a real ``streamlit run app.py`` server on a free localhost port (for the browser test
and the memory benchmark), and the flags Debian's headless Chromium needs on a machine with no network."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from ..errors import D2DebugError

__all__ = ["ROOT", "CHROMIUM", "CHROMIUM_ARGS", "free_port", "streamlit_server"]

ROOT = Path(__file__).resolve().parents[2]  # the checkout, where app.py is
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach Google's hosts and gets refused.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(log_path: Path, timeout_s: float = 120.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``streamlit run app.py`` bound to 127.0.0.1 until the block ends; yields ``(url, process)`` once
    ``/_stcore/health`` answers ``ok``. Raises :class:`D2DebugError` with the log's tail if it never does."""
    port = free_port()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
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
