"""The docs name only what exists: repository paths, importable ``mmfeat`` modules and their attributes,
links and their anchors; and bench/ scripts find the siblings and helpers they import.

Fast (text and AST only, plus one subprocess that imports the modules the docs name) and offline.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
BENCH = ROOT / "bench"

#: top-level folders whose paths the docs may name (a path under any of them must exist)
_TOP = r"(?:bench|pipelines|featurizers|recommenders|manifests|scripts|tests|docs|mmfeat|\.ci)"
#: a repository path: a known top-level folder, then path characters or a {a,b} brace group
_PATH = re.compile(r"(?<![\w./~$-])(" + _TOP + r"/(?:[\w.\-/*<>]|\{[^}\s]*\})*)")
_TOP_FILES = re.compile(r"(?<![\w./-])(README\.md|ARCHITECTURE\.md|pyproject\.toml)\b")
#: a dotted name in the mmfeat package (a module, or a module's attribute)
_DOTTED = re.compile(r"(?<![\w/.-])(mmfeat(?:\.[A-Za-z_]\w*)+)")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
#: product docs name the project's own files, never a planning document or the work items that built it
_FORBIDDEN = [re.compile(p, re.I) for p in (r"DESIGN\.md", r"\.\./shared\b", r"\bshared/", r"\(issue\b",
                                            r"\bissues?\s*#?\d+", r"\b(?:this|the) issue\b")]


def _strip_fences(text: str) -> str:
    """The text without fenced code blocks (headings inside them are comments, not headings)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _expand_braces(path: str) -> list[str]:
    m = re.search(r"\{([^}]*)\}", path)
    if not m:
        return [path]
    return [q for alt in m.group(1).split(",") for q in _expand_braces(path[: m.start()] + alt + path[m.end():])]


def _repo_paths(text: str) -> set[str]:
    out = set()
    for raw in _PATH.findall(text) + _TOP_FILES.findall(text):
        path = raw.rstrip(".:")
        if any(s in path for s in ("<", "*", "...", "$")) or path.startswith("bench/_work"):
            continue  # a placeholder, a glob, or scratch data made at run time
        out.update(_expand_braces(path))
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def _anchors(doc: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _strip_fences(doc.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slug = _slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_names_only_existing_paths(doc: Path) -> None:
    missing = sorted(p for p in _repo_paths(doc.read_text()) if not (ROOT / p).exists())
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_links_resolve(doc: Path) -> None:
    bad = []
    for target in _LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not bad, f"{doc.name}: {bad}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_names_no_planning_documents(doc: Path) -> None:
    text = doc.read_text()
    hits = [m.group(0) for pattern in _FORBIDDEN for m in pattern.finditer(text)]
    assert not hits, f"{doc.name} refers to planning documents or work items: {hits}"


_RESOLVE = r"""
import importlib, json, sys
bad = {}
for name in json.loads(sys.argv[1]):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except ModuleNotFoundError as exc:
            if exc.name != ".".join(parts[:i]):  # the module exists but one of its imports does not
                bad[name] = f"{type(exc).__name__}: {exc}"
                break
        except Exception as exc:
            bad[name] = f"{type(exc).__name__}: {exc}"
            break
    if name in bad:
        continue
    for attr in parts[i:]:
        if not hasattr(obj, attr):
            bad[name] = f"{'.'.join(parts[:i])} has no attribute {attr!r}"
            break
        obj = getattr(obj, attr)
print(json.dumps(bad))
"""


def test_docs_name_only_importable_modules() -> None:
    names = sorted({n for doc in DOCS for n in _DOTTED.findall(doc.read_text())})
    assert names, "the docs name no mmfeat module: the pattern is broken"
    proc = subprocess.run([sys.executable, "-c", _RESOLVE, json.dumps(names)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    bad = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not bad, f"the docs name modules or attributes that do not import: {bad}"


def _bench_files(*suffixes: str) -> list[Path]:
    return sorted(p for p in BENCH.rglob("*") if p.suffix in suffixes and "_work" not in p.parts)


def test_bench_scripts_import_only_what_is_there() -> None:
    """A bench script imports its siblings (same family folder) and the shared helpers (bench/ itself):
    every such import must resolve from the script's folder or bench/."""
    stems = {p.stem for p in _bench_files(".py")}
    bad = []
    for script in _bench_files(".py"):
        for node in ast.walk(ast.parse(script.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if top in stems and not ((script.parent / f"{top}.py").exists() or (BENCH / f"{top}.py").exists()):
                    bad.append(f"{script.relative_to(ROOT)}: import {top}")
        for sibling in re.findall(r"with_name\(\"([\w.]+\.(?:py|sh))\"\)", script.read_text()):
            if not (script.parent / sibling).exists():
                bad.append(f"{script.relative_to(ROOT)}: {sibling} is not next to it")
    assert not bad, bad


def test_bench_files_name_existing_bench_paths() -> None:
    """Commands, docstrings and logs under bench/ name scripts and logs where they are."""
    bad = []
    for f in _bench_files(".py", ".md", ".sh"):
        for path in _repo_paths(f.read_text()):
            if path.startswith("bench/") and not (ROOT / path).exists():
                bad.append(f"{f.relative_to(ROOT)}: {path}")
    assert not bad, bad
