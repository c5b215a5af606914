"""JupyterLab really starts (as root too) and has the ipywidgets extension; `make lab` handles root."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ipywidgets' JupyterLab extension, as /lab/api/extensions names it (npm or Python spelling)
WIDGETS = {"@jupyter-widgets/jupyterlab-manager", "jupyter-widgets-jupyterlab-manager"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def test_jupyterlab_starts_and_has_ipywidgets(tmp_path: Path) -> None:
    port, token = _free_port(), secrets.token_hex(16)
    root = ["--allow-root"] if os.geteuid() == 0 else []  # Jupyter refuses root without it
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT / 'notebooks'}",
         *root],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status, page = _get(f"{base}/lab?token={token}")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert server.poll() is None, f"jupyter lab exited: {server.stderr.read().decode()[-2000:]}"
        assert status == 200, f"/lab answered {status}"
        assert b"JupyterLab" in page
        assert _get(f"{base}/api/contents")[0] == 403, "without the token the server must refuse"
        status, body = _get(f"{base}/lab/api/extensions?token={token}")
        assert status == 200
        extensions = {e["name"]: e for e in json.loads(body)}
        widgets = [extensions[name] for name in WIDGETS & set(extensions)]
        assert widgets and all(w["enabled"] for w in widgets), f"no enabled ipywidgets extension in {sorted(extensions)}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stderr.close()


def test_make_lab_adds_allow_root_for_root() -> None:
    recipe = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lab = [line for line in recipe.splitlines() if "jupyter lab" in line]
    assert lab, recipe
    assert ("--allow-root" in lab[-1]) == (os.geteuid() == 0), lab[-1]
