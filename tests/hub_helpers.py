"""A local Hub in a subprocess, and what its clients in the tests and benchmarks share.

``HubProcess`` runs ``hubkit hub serve`` (open mode) as a user would, so a test can SIGKILL it
and a benchmark can read its peak memory. The benchmarks import this module from ``tests/``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def commit_body(summary: str, files: dict[str, bytes], **header: Any) -> bytes:
    """The NDJSON payload of ``POST /api/models/{repo}/commit/{revision}`` adding ``files``."""
    lines = [{"key": "header", "value": {"summary": summary, **header}}]
    lines += [
        {"key": "file", "value": {"path": p, "content": base64.b64encode(d).decode(), "encoding": "base64"}}
        for p, d in files.items()
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of ``pid`` so far (the kernel's high-water mark, VmHWM)."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import psutil  # not Linux: fall back to the current RSS

    return psutil.Process(pid).memory_info().rss / 2**20


class HubProcess:
    """``hubkit hub serve`` on ``root`` in a subprocess, restartable, killed with SIGKILL (never shut down).

    ``toolkit`` serves the hubkit package found there (a baseline's code) instead of this one.
    ``peak_mb`` is the largest peak RSS of its processes so far, read as each is killed.
    """

    def __init__(self, root: Path, port: int | None = None, toolkit: Path | None = None):
        self.root, self.toolkit = root, toolkit
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.peak_mb = 0.0

    def start(self, timeout: float = 60) -> HubProcess:
        env = {**os.environ, "PYTHONPATH": str(self.toolkit)} if self.toolkit else None
        command = [sys.executable, "-c", "from hubkit.cli import main; main()", "hub", "serve"]
        self.proc = subprocess.Popen(
            [*command, "--root", str(self.root), "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint}/api/whoami-v2", timeout=2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("the hub server exited on start") from None
                time.sleep(0.05)
        self.kill()
        raise TimeoutError("the hub server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.peak_mb = max(self.peak_mb, peak_rss_mb(self.proc.pid))
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def point_clients_at(endpoint: str, hf_home: Path) -> None:
    """Send this process's HF clients to ``endpoint`` anonymously; call it before importing them."""
    os.environ.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    os.environ.pop("HF_TOKEN", None)
