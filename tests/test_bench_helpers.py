"""The helpers every benchmark under bench/ shares (bench/_results.py)."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone: it has stopped, only its exit status is left)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_killing_a_benchmark_stops_its_worker(tmp_path):
    """A benchmark killed with SIGTERM while ``subprocess.run`` waits on a worker takes the worker with it."""
    pid_file = tmp_path / "worker.pid"
    worker = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    bench = textwrap.dedent(f"""
        import subprocess, sys
        sys.path.insert(0, {str(ROOT / 'bench')!r})
        from _results import exit_on_sigterm
        exit_on_sigterm()
        subprocess.run([sys.executable, "-c", {worker!r}])
    """)
    parent = subprocess.Popen([sys.executable, "-c", bench])
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 143
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the worker outlived its killed benchmark"
