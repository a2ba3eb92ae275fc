"""Show a served flow run's own log lines in the terminal that started it.

Why: ``prefect deployment run NAME --watch`` prints the run's state changes and nothing else; the run's
log lines (items done and items/s every few seconds, one line per feature set built or reused) go to the
deployment runner's output, a file nobody watches (``.prefect/serve.log`` in ``scripts/demo.sh``).
``python -m mmfeat.pipelines.flows.runlog FILE`` follows that file from its current end and prints each
flow-run line as ``  HH:MM:SS message`` (task-run lines and everything else are left out), until SIGTERM
or SIGINT; then it prints the lines still unread and exits 0. ``scripts/demo.sh`` runs it next to
``--watch`` and stops it when the run ends. Prefect-free: it only reads a file.
"""
from __future__ import annotations

import re
import signal
import sys
import threading
from pathlib import Path
from typing import TextIO

#: A Prefect console line of a flow run: ``12:01:02.345 | INFO    | Flow run 'red-fox' - message``.
_FLOW_LINE = re.compile(r"^(\d\d:\d\d:\d\d)(?:\.\d+)? \| (\w+)\s*\| Flow run '[^']*' - (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def flow_line(line: str) -> str | None:
    """The short form of one runner-log line if it is a flow run's log line, else None.

    Example:
        >>> flow_line("12:01:02.345 | INFO    | Flow run 'red-fox' - title: 20/40 items (50%), 8.1 items/s")
        '  12:01:02 title: 20/40 items (50%), 8.1 items/s'
        >>> flow_line("12:01:03.001 | INFO    | Task run 'title-shard-0' - Finished in state Completed()") is None
        True
    """
    m = _FLOW_LINE.match(_ANSI.sub("", line).rstrip("\r\n"))
    if m is None:
        return None
    clock, level, message = m.groups()
    return f"  {clock} {message}" if level == "INFO" else f"  {clock} {level}: {message}"


def follow(path: Path, out: TextIO, stop: threading.Event, *, offset: int | None = None, poll_s: float = 0.2) -> int:
    """Print the flow-run lines appended to ``path`` until ``stop`` is set, then the ones still unread.

    Args:
        path: the runner's log (it may not exist yet).
        out: where the short lines go (flushed per line).
        stop: set it to finish.
        offset: where to start reading (default: the file's size now, so earlier runs stay out).
        poll_s: seconds between two looks at the file.

    Returns:
        The number of lines printed.
    """
    if offset is None:
        offset = path.stat().st_size if path.exists() else 0
    printed, pending = 0, ""
    while True:
        stopping = stop.is_set()  # read once more after the stop: the run's last lines
        if path.exists():
            with path.open("r", encoding="utf-8", errors="replace") as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
            pending += chunk
            *complete, pending = pending.split("\n")
            for line in complete:
                short = flow_line(line)
                if short is not None:
                    out.write(short + "\n")
                    out.flush()
                    printed += 1
        if stopping:
            return printed
        stop.wait(poll_s)


def main(argv: list[str] | None = None) -> int:
    """``python -m mmfeat.pipelines.flows.runlog FILE [OFFSET]``: follow FILE (from byte OFFSET, default its
    end) until SIGTERM / SIGINT."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2) or (len(args) == 2 and not args[1].isdigit()):
        print("usage: python -m mmfeat.pipelines.flows.runlog RUNNER_LOG [OFFSET]", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    follow(Path(args[0]), sys.stdout, stop, offset=int(args[1]) if len(args) == 2 else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
