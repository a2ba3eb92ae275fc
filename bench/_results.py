"""What every parity benchmark shares: the run log it appends to (bench/RESULTS_*.md, a section per run with
its command), its fresh-process workers, and stopping those workers when the benchmark is killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def append_results(path: Path, heading: str, title: str, command: str, body: str) -> None:
    """Append ``## title``, the command (date, CPU cores) and ``body`` to ``path`` (created with ``heading``)."""
    text = path.read_text() if path.exists() else f"# {heading}\n"
    text += f"\n## {title}\n\n`{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores)\n\n{body}\n"
    path.write_text(text)


def run_json_worker(script: str | Path, spec: dict, env: dict, cwd: str | Path) -> dict:
    """Run ``python script _worker <spec as JSON>`` in a fresh process (clean timings and peak memory) and return
    the JSON object its last stdout line prints; a failed worker stops the benchmark with its stderr."""
    proc = subprocess.run([sys.executable, str(script), "_worker", json.dumps(spec)], env=env, capture_output=True,
                          text=True, cwd=cwd)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"worker failed: {spec}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def exit_on_sigterm() -> None:
    """Make a ``kill`` (SIGTERM) of the benchmark stop its worker processes too, as Ctrl-C does.

    Python ends on SIGTERM without unwinding, so a worker started by ``subprocess.run`` (a reference run in its
    own venv, a 30-minute training) kept running after its benchmark was killed. As ``SystemExit`` the signal
    unwinds through ``subprocess.run``, which kills its child on the way out.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
