#!/usr/bin/env python3
"""Project tasks: setup, test, demo, bench.

    python3 build.py demo    # set up .venv if needed, generate human motions + a preview GIF
    python3 build.py test    # set up .venv if needed, run the test suite
    python3 build.py setup [--torch-index URL]   # only the environment
    python3 build.py bench   # the speed table (mas bench)
    python3 build.py extension   # dist/mas_motion-VERSION.zip, the installable Blender extension
    python3 build.py blender 4.5 # the bpy module of Blender 4.5 (or 4.2) in .blender/4.5, for the tests

The environment is ``.venv`` (Python 3.11) with the pinned versions of requirements.txt and
this project installed in editable mode (the ``mas`` command). It is rebuilt only when
requirements.txt or pyproject.toml change.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".mas-setup"


def run(cmd, **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    r = subprocess.run([str(c) for c in cmd], **kw)
    if r.returncode:
        sys.exit(r.returncode)


def find_python311() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    for name in ("python3.11", "py -3.11"):
        exe = shutil.which(name)
        if exe:
            return exe
    sys.exit("build.py: Python 3.11 is needed (Blender's bpy module requires exactly 3.11); "
             "install it (e.g. 'apt install python3.11' or pyenv) and run again")


def setup(torch_index: str | None = None) -> None:
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
                            + (torch_index or "").encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest and PY.exists():
        return
    if not PY.exists():
        run([find_python311(), "-m", "venv", VENV])
    pip = [PY, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if torch_index:
        torch_req = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch"))
        run(pip + ["--index-url", torch_index, torch_req])
    run(pip + ["-r", ROOT / "requirements.txt"])
    run(pip + ["--no-deps", "-e", ROOT])
    STAMP.write_text(digest)


# Blender versions tested beside .venv's own 5.0 (requirements.txt): their bpy wheels go into
# .blender/VERSION on first use (about 800 MB each), so the default setup stays lean
BLENDER_VERSIONS = {"4.2": "4.2.23", "4.5": "4.5.15"}


def blender(version: str) -> Path:
    """The folder holding the ``bpy`` module of Blender ``version`` (installed on first use); put it
    first on PYTHONPATH to run the add-on's tests on that version."""
    if version not in BLENDER_VERSIONS:
        sys.exit(f"build.py: Blender {version} is not one of the tested versions ({', '.join(BLENDER_VERSIONS)}, and 5.0)")
    pin, target = BLENDER_VERSIONS[version], ROOT / ".blender" / version
    stamp = target / ".mas-bpy"
    if stamp.exists() and stamp.read_text() == pin:
        return target
    shutil.rmtree(target, ignore_errors=True)
    run([PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps", "--target", target, f"bpy=={pin}"])
    stamp.write_text(pin)
    return target


ENGINE_PACKAGES = ("mas_engine", "rigs", "retarget", "mas_app")


def build_extension(dist: Path = ROOT / "dist") -> Path:
    """Stage blender_addon/ with the engine packages (and shipped models) under vendor/, then zip it
    with Blender's own extension builder (from the bpy wheel) and validate the zip."""
    import re
    import tempfile

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "vendor", "deps")
    purelib = subprocess.run([str(PY), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    builder = next(Path(purelib, "bpy").glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"), None)
    if builder is None:
        sys.exit("build.py: Blender's extension builder was not found in the bpy wheel; run 'python3 build.py setup'")
    manifest = (ROOT / "blender_addon" / "blender_manifest.toml").read_text()
    ext_id = re.search(r'^id = "(.+)"', manifest, re.M).group(1)
    version = re.search(r'^version = "(.+)"', manifest, re.M).group(1)
    dist.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / ext_id
        shutil.copytree(ROOT / "blender_addon", stage, ignore=ignore)
        for pkg in ENGINE_PACKAGES:
            shutil.copytree(ROOT / pkg, stage / "vendor" / pkg, ignore=ignore)
        run([PY, builder, "build", "--source-dir", stage, "--output-dir", dist])
    zip_path = dist / f"{ext_id}-{version}.zip"
    run([PY, builder, "validate", zip_path])
    return zip_path


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    task, rest = argv[0], argv[1:]
    torch_index = None
    if "--torch-index" in rest:
        i = rest.index("--torch-index")
        torch_index = rest[i + 1]
        del rest[i:i + 2]
    setup(torch_index)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if task == "setup":
        print(f"environment ready: {VENV} (run 'source {BIN / 'activate'}' to get the 'mas' command)")
    elif task == "test":
        r = subprocess.run([str(PY), "-m", "pytest", *rest], cwd=ROOT, env=env)
        sys.exit(r.returncode)
    elif task == "demo":
        out = ROOT / "demo_output"
        run([BIN / "mas", "generate", "--model", "human", "--num", "4", "--seconds", "4", "--seed", "0",
             "--out", out, "--preview", "--overwrite", *rest], env=env)      # the demo's own folder: made anew
        run([PY, "-m", "mas_engine.viz", out], env=env)
        print(f"demo: motions (.npz), previews (.gif) and a film strip (strip.png) are in {out}")
    elif task == "bench":
        run([BIN / "mas", "bench", *rest], env=env)
    elif task == "extension":
        print(f"extension: {build_extension()}")
    elif task == "blender":
        print(f"bpy {BLENDER_VERSIONS.get(rest[0] if rest else '', '?')}: {blender(rest[0] if rest else '')}")
    else:
        sys.exit(f"build.py: unknown task {task!r}; use setup, test, demo, bench, extension or blender")


if __name__ == "__main__":
    main(sys.argv[1:])
