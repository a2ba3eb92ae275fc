"""``python die_with_parent.py PARENT_PID PROGRAM [ARGS...]``: become PROGRAM, killed when PARENT_PID dies.

The ``mmfeat`` CLI starts its temporary Prefect server through this script (run as a file, standard
library only, so it imports nothing of mmfeat). On Linux it asks the kernel to SIGKILL this process when
its parent dies (``prctl(PR_SET_PDEATHSIG)``), then ``exec``s the program; the request survives the
``exec``, so the server dies with the CLI even after a ``kill -9`` of the CLI, which no ``finally`` or
signal handler can see. Doing this here rather than in a ``preexec_fn`` keeps ``subprocess`` free of code
run between fork and exec, which is unsafe in a process with threads (Prefect's log and event workers).

If the parent is already gone when the request is made (it died between fork and here), the program is
not started. On systems without ``prctl`` the program simply runs; the CLI still stops it in its
``finally`` and on SIGINT / SIGTERM.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    """Set the parent-death signal, check the parent, exec the program; returns only on a usage error."""
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: die_with_parent.py PARENT_PID PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    parent, program = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            print(f"die_with_parent: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}", file=sys.stderr)
            return 1
        if os.getppid() != parent:  # the parent died before the request: nobody would ever stop the program
            return 1
    os.execv(program[0], program)
    return 1  # not reached: execv replaces this process or raises


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
