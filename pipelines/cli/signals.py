"""SIGINT and SIGTERM end a CLI command the same way: an exception that runs every ``finally``.

Python's default SIGTERM ends the process at once: no ``finally`` runs, so the temporary Prefect server
was never stopped, and Prefect's own SIGTERM bridge (installed while a flow runs) logs "Crash detected!"
and then re-sends SIGTERM to whatever handler was there before. With :func:`handle_signals` that
handler is ours: both signals raise :class:`Interrupted` in the main thread, the command unwinds
(Prefect marks the run crashed, the CLI stops its server), and :func:`mmfeat.pipelines.cli.errors.report`
prints one line and exits ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the command. A :class:`KeyboardInterrupt`, so that Prefect and every
    other library treat it as they treat Ctrl-C (a crash of the run, never an error to retry)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        """``SIGINT`` or ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """``128 + signal number``, what a shell reports for a process a signal ended."""
        return 128 + self.signum


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise :class:`Interrupted`; the previous handlers are
    restored after it. Outside the main thread (a CLI call from a worker thread) signals cannot be
    handled there, so nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, handler in previous.items():  # None: a handler installed from C, which Python cannot restore
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
