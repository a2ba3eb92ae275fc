"""Environment defaults for the CLI, the scripts and the tests, applied on request, never on import.

Prefect keeps its state under ``$PREFECT_HOME``; mmfeat defaults it to ``.prefect/`` in the working
directory (the project a user runs from, never the package's install location), turns telemetry
off, and raises the ephemeral-server start-up timeout (the 20 s default is too short on a busy
2-core machine). Variables already set win.
"""

from __future__ import annotations

import os
from pathlib import Path


def defaults(cwd: Path | None = None) -> dict[str, str]:
    """The defaults :func:`apply_defaults` sets (for ``cwd``, default the working directory)."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    return {
        "PREFECT_HOME": str(base / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def apply_defaults(cwd: Path | None = None) -> dict[str, str]:
    """Set each default that is not already in the environment; call before importing Prefect.

    Returns:
        The variables this call set.

    Example:
        >>> from mmfeat.pipelines.environment import apply_defaults
        >>> _ = apply_defaults()  # doctest: +SKIP
    """
    set_now = {k: v for k, v in defaults(cwd).items() if k not in os.environ}
    os.environ.update(set_now)
    return set_now
