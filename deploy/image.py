"""The gateway image's install, rehearsed without Docker.

The Dockerfile runs ``pip install .`` on the build context that ``.dockerignore`` lets in. This
builds a wheel from a copy of that context, installs it into a scratch directory, and builds
the gateway app from it with the compose GPU config in a fresh interpreter that cannot see the
source tree. It catches what an editable install hides: a file the code loads at run time
(``router/data/default_model.json``) missing from the wheel's package data, or a file the build
needs (the readme) missing from the context.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from deploy.tools import ROOT, run

SMOKE_CONFIG = ROOT / "config" / "gpu.yaml"
# Run in the fresh interpreter: drop the editable install's finder so only the wheel is seen.
_SMOKE = """
import os, sys
site, config = sys.argv[1], sys.argv[2]
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path.insert(0, site)
import server
assert server.__file__.startswith(site), f"imported {server.__file__}, not the wheel"
from server.app import create_app
from server.config import load_settings
os.environ.setdefault("TTC_API_KEY", "smoke-test-key")
settings = load_settings(config)
key_file = os.path.join(site, "worker_key")  # the compose secret the tiers read
with open(key_file, "w") as out:
    out.write("smoke-test-worker-key")
tiers = {
    name: tier.model_copy(update={"api_key_file": key_file}) if tier.api_key_file else tier
    for name, tier in settings.tiers.items()
}
create_app(settings.model_copy(update={"tiers": tiers}))
"""


def context_entries() -> list[str]:
    """What the allowlist ``.dockerignore`` lets in (its ``!name`` lines)."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line[1:].strip().rstrip("/") for line in lines if line.startswith("!")]


def copy_context(target: Path) -> None:
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache")
    target.mkdir(parents=True)
    for name in context_entries():
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=junk)
        elif source.is_file():
            shutil.copy2(source, target / name)


def check_image_install() -> list[str]:
    """Problems installing and starting the gateway the way the image does (empty: none)."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        copy_context(scratch / "context")
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        wheel = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(scratch / "dist")]
        code, out = run([*wheel, str(scratch / "context")], cwd=scratch)
        if code != 0:
            return [f"pip wheel of the build context failed:\n{out}"]
        (built,) = (scratch / "dist").glob("*.whl")
        site = scratch / "site"
        code, out = run([*pip, "install", "--no-deps", "--target", str(site), str(built)])
        if code != 0:
            return [f"pip install of {built.name} failed:\n{out}"]
        smoke = [sys.executable, "-c", _SMOKE, str(site), str(SMOKE_CONFIG)]
        code, out = run(smoke, cwd=scratch)
        if code != 0:
            last = out.splitlines()[-1] if out else f"exit {code}"
            return [f"the installed wheel cannot build the app from {SMOKE_CONFIG.name}: {last}"]
    return []
