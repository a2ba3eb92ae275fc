"""The public API: ``import mmfeat`` is cheap and side-effect free; extract/train run in process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_mmfeat_changes_nothing_and_loads_nothing_heavy() -> None:
    code = ("import os, sys; before = dict(os.environ); import mmfeat; "
            "assert dict(os.environ) == before, 'import changed the environment'; "
            "heavy = [m for m in ('torch', 'prefect', 'transformers', 'pyarrow') if m in sys.modules]; "
            "assert not heavy, heavy; print(sorted(mmfeat.__all__))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MMFEAT_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "extract" in out.stdout and "FeatureStore" in out.stdout


def test_every_public_name_has_a_documented_entry_point() -> None:
    import mmfeat

    for name in ("FeatureStore", "load_manifest", "extract", "train"):
        doc = getattr(mmfeat, name).__doc__ or ""
        assert "Example" in doc, name
    for name in ("extract", "train", "load_manifest"):
        doc = getattr(mmfeat, name).__doc__
        assert "Args:" in doc and "Returns:" in doc and "Raises:" in doc, name


def test_extract_then_read_in_process(tmp_path: Path) -> None:
    import mmfeat

    (rep,) = mmfeat.extract("microlens", feature_sets=["title_minilm"], store=tmp_path, progress="none")
    assert rep.rows == 40 and not rep.cache_hit
    again = mmfeat.extract("microlens", feature_sets=["title_minilm"], store=tmp_path, progress="none")
    assert again[0].cache_hit and again[0].version == rep.version
    read = mmfeat.FeatureStore(tmp_path).read_matrix("microlens-mini", "title_minilm", item_ids=["1", "2"])
    assert read.matrix.shape == (2, 384) and np.isfinite(read.matrix).all()


def test_training_and_extraction_engines_import_no_prefect() -> None:
    """mmfeat.extract / mmfeat.train run the deployments' code without Prefect in the process."""
    code = ("import sys, mmfeat.pipelines.training.run, mmfeat.pipelines.engine.extract, mmfeat.api; "
            "assert 'prefect' not in sys.modules, 'prefect imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_train_defaults_both_seeds_to_the_one_default(tmp_path: Path) -> None:
    """``mmfeat.train``, the CLI and the flow share DEFAULT_SEED; never the recommenders' config default (999)."""
    import inspect

    import mmfeat
    from mmfeat.pipelines.training.run import DEFAULT_SEED
    from mmfeat.recommenders import TrainerConfig

    assert TrainerConfig().seed != DEFAULT_SEED  # else this test could not tell the two apart
    params = inspect.signature(mmfeat.train).parameters
    assert params["seed"].default is None and params["split_seed"].default is None  # None: DEFAULT_SEED
    out = mmfeat.train("microlens", model="LightGCN", overrides={"epochs": 1}, split="random",
                       store_root=str(tmp_path / "store"), runs_dir=str(tmp_path / "runs"))
    assert out["best"]["config"]["seed"] == DEFAULT_SEED and out["data"]["split"]["seed"] == DEFAULT_SEED


def test_extract_refuses_a_mistyped_feature_set_or_backbone_before_loading(tmp_path: Path) -> None:
    import mmfeat

    with pytest.raises(mmfeat.ManifestError, match="did you mean title_minilm"):
        mmfeat.extract("microlens", feature_sets=["title_minlm"], store=tmp_path, progress="none")
    manifest = tmp_path / "m.yaml"
    manifest.write_text((REPO / "manifests" / "microlens.yaml").read_text()
                        .replace("backbone: all-MiniLM-L6-v2", "backbone: all-MiniLM-L6-v3", 1)
                        .replace("data_root: data/microlens-mini", f"data_root: {REPO}/manifests/data/microlens-mini"))
    with pytest.raises(mmfeat.ManifestError, match="did you mean all-MiniLM-L6-v2"):
        mmfeat.extract(manifest, feature_sets=["title_minilm"], store=tmp_path, progress="none")
    assert not (tmp_path / "microlens-mini").exists()  # nothing was written
