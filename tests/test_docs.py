"""The README and docs/ stay navigable: links resolve, named pages exist, named tools answer --help."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

MAX_README_LINES = 220
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
DOCS_PAGE = re.compile(r"\bdocs/[\w.-]+\.md\b")
TOOL = re.compile(r"\bpython3?\s+(tools/[\w/.-]+\.py)\b")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _links(page: Path) -> list[str]:
    """Link targets of a markdown page, outside fenced code blocks."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return LINK.findall(text)


def _is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("#")


def _tools_named() -> list[str]:
    found: set[str] = set()
    for page in PAGES:
        found.update(TOOL.findall(page.read_text(encoding="utf-8")))
    return sorted(found)


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page: Path):
    missing = []
    for target in _links(page):
        if not _is_relative(target):
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{_rel(page)} links to missing files: {missing}"


def test_docs_pages_named_in_readme_exist():
    named = sorted(set(DOCS_PAGE.findall(README.read_text(encoding="utf-8"))))
    assert named, "README.md names no docs/*.md page"
    missing = [name for name in named if not (ROOT / name).is_file()]
    assert not missing, f"README.md names missing pages: {missing}"


def test_named_tools_exist_and_answer_help():
    tools = _tools_named()
    assert "tools/pretrain.py" in tools, tools
    missing = [t for t in tools if not (ROOT / t).is_file()]
    assert not missing, f"README/docs name tools that do not exist: {missing}"

    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}

    def help_of(tool: str) -> tuple[str, subprocess.CompletedProcess]:
        cmd = [sys.executable, tool, "--help"]
        return tool, subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)

    with ThreadPoolExecutor(max_workers=len(tools)) as pool:
        results = list(pool.map(help_of, tools))
    failed = [f"{tool}: rc={p.returncode}\n{p.stderr[-1500:]}" for tool, p in results if p.returncode != 0]
    assert not failed, "--help failed:\n" + "\n".join(failed)
    silent = [tool for tool, p in results if "usage" not in p.stdout.lower()]
    assert not silent, f"--help printed no usage: {silent}"
