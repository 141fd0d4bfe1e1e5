"""The README and docs/ stay navigable: links resolve, named pages exist, named tools answer --help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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


# One interpreter imports torch once, then forks one child per tool that runs it as `python tools/X.py --help`
# would (as __main__, sys.argv[0] the tool, its folder first on sys.path). Eight cold interpreters spend
# most of their time importing torch: ~3x the CPU time of this, over the ~30 s budget on 2 busy cores.
_FORK_HELP = r"""
import json, os, runpy, sys
out_dir, tools = sys.argv[1], sys.argv[2:]
for name in ("torch", "torchvision", "skimage"):
    try:
        __import__(name)
    except Exception:
        pass  # the tool's own import reports it
children = {}
for tool in tools:
    log = os.path.join(out_dir, tool.replace("/", "_") + ".log")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    pid = os.fork()
    if pid == 0:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.argv = [tool, "--help"]
        sys.path[0] = os.path.abspath(os.path.dirname(tool))
        code = 0
        try:
            runpy.run_path(tool, run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(fd)
    children[pid] = (tool, log)
results = {}
for _ in range(len(children)):
    pid, status = os.wait()
    tool, log = children[pid]
    results[tool] = [os.waitstatus_to_exitcode(status), log]
print(json.dumps(results))
"""


def test_named_tools_exist_and_answer_help(tmp_path):
    tools = _tools_named()
    assert "tools/pretrain.py" in tools, tools
    missing = [t for t in tools if not (ROOT / t).is_file()]
    assert not missing, f"README/docs name tools that do not exist: {missing}"

    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-c", _FORK_HELP, str(tmp_path), *tools]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(results) == tools
    outputs = {tool: Path(log).read_text(errors="replace") for tool, (_, log) in results.items()}
    failed = [f"{tool}: rc={rc}\n{outputs[tool][-1500:]}" for tool, (rc, _) in sorted(results.items()) if rc != 0]
    assert not failed, "--help failed:\n" + "\n".join(failed)
    silent = [tool for tool, text in outputs.items() if "usage" not in text.lower()]
    assert not silent, f"--help printed no usage: {silent}"
