"""A CLI command that runs a flow leaves no process behind, however it ends (SIGKILL, SIGTERM, Ctrl-C, a
failure), says an interruption in one line (exit 128 + signal), and a failure inside the flow once.

Each case runs the real ``mmfeat extract`` on the tiny microlens sample in a subprocess, with one change:
building the featurizer blocks (or fails), so the signal always lands while the flow runs, on a server
that is up. The server is a child of the command; psutil collects every descendant seen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

#: ``python -c`` body: featurizer building blocks (``hang``) or fails (``fail``) after writing the marker file
DRIVER = r"""
import pathlib, sys, time
from mmfeat.featurizers.registry import FeaturizerKind

marker, action, argv = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]

def build(self, params):
    marker.write_text("building")
    if action == "fail":
        raise RuntimeError("boom-7f3a: the featurizer failed")
    time.sleep(600)

FeaturizerKind.build = build
from mmfeat.pipelines.cli import main
sys.exit(main(argv))
"""

INTERRUPTED_LINE = "interrupted ({}); finished shards are kept: the next run resumes from them"


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Prefect home for the module: its database is created (migrated) once, not per case."""
    return tmp_path_factory.mktemp("prefect-home")


def _env(prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MMFEAT_"))}
    return {**env, "PREFECT_HOME": str(prefect_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _start(tmp_path: Path, prefect_home: Path, action: str) -> tuple[subprocess.Popen, Path, Path]:
    marker, err = tmp_path / "building", tmp_path / "stderr.txt"
    argv = ["extract", "microlens", "--feature-set", "title_minilm", "--store", str(tmp_path / "store"),
            "--progress", "none"]
    with open(tmp_path / "stdout.txt", "wb") as out, open(err, "wb") as errf:  # files: a survivor holds no pipe
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(marker), action, *argv], cwd=tmp_path,
                                env=_env(prefect_home), stdout=out, stderr=errf)
    return proc, marker, err


def _descendants_until(proc: subprocess.Popen, marker: Path, timeout_s: float = 240) -> dict[int, psutil.Process]:
    """Every descendant of ``proc`` seen until ``marker`` exists (the flow is building the featurizer)."""
    root, seen = psutil.Process(proc.pid), {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        for child in root.children(recursive=True):
            seen.setdefault(child.pid, child)
        if marker.exists():
            return seen
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the flow never started building (exit {proc.poll()})")


def _assert_none_survive(seen: dict[int, psutil.Process]) -> None:
    _gone, alive = psutil.wait_procs(list(seen.values()), timeout=15)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:  # do not leak them into the rest of the session
        p.kill()
    assert not alive, f"still running 15 s after the command ended: {[(p.pid, p.cmdline()[:4]) for p in alive]}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_no_process_survives_the_command(sig, tmp_path, prefect_home) -> None:
    proc, marker, err = _start(tmp_path, prefect_home, "hang")
    try:
        seen = _descendants_until(proc, marker)
        assert any("uvicorn" in " ".join(p.cmdline()) for p in seen.values() if p.is_running()), \
            "the command's Prefect server is not among its children"
        proc.send_signal(sig)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    _assert_none_survive(seen)
    assert code == (-sig if sig == signal.SIGKILL else 128 + sig)
    if sig != signal.SIGKILL:
        text = err.read_text()
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines[-1] == INTERRUPTED_LINE.format(sig.name), text
        assert "Traceback" not in text and "Crash detected" not in text, text


def test_failure_in_the_flow_is_said_once_and_leaves_nothing(tmp_path, prefect_home) -> None:
    proc, marker, err = _start(tmp_path, prefect_home, "fail")
    try:
        seen = _descendants_until(proc, marker)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    _assert_none_survive(seen)
    text = err.read_text()
    assert code == 1, text
    assert text.count("boom-7f3a") == 1, text  # not also Prefect's "Encountered exception" and "Failed(...)"
    assert "error: RuntimeError: boom-7f3a: the featurizer failed" in text and "Traceback" not in text, text
