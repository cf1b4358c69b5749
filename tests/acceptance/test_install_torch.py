"""tools/install-torch.sh picks PyTorch's CPU index only when it answers (loopback servers), and
installs torchvision in the same command, or pinned to a torch it keeps."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "install-torch.sh"
pytestmark = pytest.mark.skipif(
    shutil.which("nvidia-smi") is not None, reason="a machine with an NVIDIA driver takes CUDA"
)


def _python(tmp_path: Path, site: bool) -> str:
    """A python for the script; without site-packages it has no torch, like a new venv."""
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {"" if site else "-S"} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def _run(tmp_path: Path, index: str, site: bool = False, **more: str) -> str:
    env = {**os.environ, "DRY_RUN": "1", "CPU_INDEX": index, "TORCH_SPEC": "torch==9.9", **more}
    done = subprocess.run(
        ["bash", str(SCRIPT), _python(tmp_path, site)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class _Index(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/simple/torch/"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"<a href='torch-9.9-py3-none-any.whl'>torch</a>" if ok else b"")

    def log_message(self, *args):
        pass


def test_an_answering_cpu_index_is_used(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_port}/simple"
        out = _run(tmp_path, index)
    finally:
        server.shutdown()
    assert f"pip install --retries 1 --timeout 15 --index-url {index} torch==9.9 torchvision" in out
    assert "CPU build" in out


def test_a_closed_port_falls_back_to_the_default_index(tmp_path):
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = _run(tmp_path, f"http://127.0.0.1:{port}/simple")
    assert out.splitlines()[-1] == "pip install torch==9.9 torchvision"
    assert "did not answer" in out


def test_a_silent_server_falls_back_after_the_probe_times_out(tmp_path):
    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        out = _run(tmp_path, f"http://127.0.0.1:{s.getsockname()[1]}/simple")
    assert out.splitlines()[-1] == "pip install torch==9.9 torchvision"
    assert "--index-url" not in out


def test_an_installed_torch_is_kept(tmp_path):
    import torch

    out = _run(tmp_path, "http://127.0.0.1:9/simple", site=True)  # this venv has torch
    assert "keeping the torch" in out
    installs = [line for line in out.splitlines() if line.startswith("pip install")]
    if importlib.util.find_spec("torchvision") is not None:
        assert installs == []
    else:  # the torchvision made for this torch is added, and torch stays
        assert installs == [f"pip install torchvision torch=={torch.__version__}"]


def test_no_torchvision_when_vision_spec_is_empty(tmp_path):
    out = _run(tmp_path, "http://127.0.0.1:9/simple", VISION_SPEC="")
    assert out.splitlines()[-1] == "pip install torch==9.9"
