"""The run log every parity benchmark appends to (bench/RESULTS_*.md): a section per run with its command."""
from __future__ import annotations

import os
import time
from pathlib import Path


def append_results(path: Path, heading: str, title: str, command: str, body: str) -> None:
    """Append ``## title``, the command (date, CPU cores) and ``body`` to ``path`` (created with ``heading``)."""
    text = path.read_text() if path.exists() else f"# {heading}\n"
    text += f"\n## {title}\n\n`{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores)\n\n{body}\n"
    path.write_text(text)
