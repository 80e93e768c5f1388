"""The add-on on every supported Blender version: 5.0 (this environment's bpy) and, each in a
folder of its own that build.py fills on first use, 4.5 LTS and 4.2 LTS. On each, the add-on's
Blender tests run in a child process, and a generated human, horse and ball character poses
exactly as on 5.0 at a middle frame."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("bpy")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import build  # noqa: E402


def _run(args, bpy_folder=None, timeout=900):
    # MAS_EXIT_AFTER_TESTS: see conftest.py (the 4.2 and 4.5 modules can hang at exit)
    env = dict(os.environ, MAS_EXIT_AFTER_TESTS="1",
               PYTHONPATH=os.pathsep.join(str(p) for p in (bpy_folder, ROOT) if p))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def probe(bpy_folder=None) -> dict:
    r = _run([str(ROOT / "tests" / "blender_probe.py")], bpy_folder, timeout=300)
    line = next((x for x in r.stdout.splitlines() if x.startswith("PROBE ")), None)
    assert line, r.stdout[-2000:] + r.stderr[-2000:]
    return json.loads(line[6:])


@pytest.fixture(scope="module")
def on_50():
    return probe()


@pytest.mark.parametrize("version", sorted(build.BLENDER_VERSIONS))
def test_the_addon_on_blender(version, on_50):
    folder = build.blender(version)
    r = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_blender_addon.py", "tests/test_blender_bvh.py",
              "-k", "not extension_zip"], folder)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]
    r = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_blender_rigify.py"], folder)   # alone: see there
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-1000:]
    seen = probe(folder)
    assert seen["version"].startswith(version)
    for model in ("human", "quadruped", "ball"):
        assert on_50[model]["mean_angle"] > 0.05, on_50                        # away from the rest pose
        assert abs(seen[model]["mean_angle"] - on_50[model]["mean_angle"]) < 1e-4, (model, seen, on_50)
        assert max(abs(a - b) for a, b in zip(seen[model]["root"], on_50[model]["root"])) < 1e-4
        assert seen[model]["frames"] == on_50[model]["frames"]
