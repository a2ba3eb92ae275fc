"""The checkout holds every source file it runs: no package file is hidden from git by an ignore rule.

Why: a root-level ignore pattern (``store/``) once matched ``pipelines/store/`` too, so new modules there
worked in the developer's tree and were missing from every clone.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ["mmfeat", "pipelines", "featurizers", "recommenders", "agents", "manifests", "scripts", "bench"]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_no_source_file_is_ignored_by_git():
    out = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--", *PACKAGE_DIRS],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    hidden = [p for p in out if p.endswith((".py", ".yaml", ".sh", ".md")) and "/_work/" not in p
              and "__pycache__" not in p]
    assert not hidden, f"ignored by .gitignore, so missing from every clone: {hidden}"
