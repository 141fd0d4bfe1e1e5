"""Command lines run in the test's own process, for the tests whose subject is not the interpreter start.

``train_net_cli`` is ``python tools/train_net.py ARGS`` without a new interpreter and a fresh import of torch and
detectron2 (~6-8 s each): the same ``cli(argv)`` (the tool's argument parsing, preflight checks and exit codes),
output captured, returned as ``conftest.run_tool`` returns a subprocess. detectron2 keeps the log handlers its
``setup_logger`` adds for an OUTPUT_DIR (log.txt there); read what a run logged from its log.txt.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


@cache
def train_net_module() -> ModuleType:
    """tools/train_net.py as a module (loaded once per process)."""
    spec = importlib.util.spec_from_file_location("_tool_train_net_in_process", ROOT / "tools/train_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def environment(env: dict[str, str] | None) -> Iterator[None]:
    """os.environ with ``env`` set, restored afterwards."""
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def train_net_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``tools/train_net.py ARGV`` in this process, with ``env`` set while it runs (relative paths: from the cwd)."""
    tool = train_net_module()
    out, err = io.StringIO(), io.StringIO()
    with environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = tool.cli(list(argv))
    return subprocess.CompletedProcess(["tools/train_net.py", *argv], code, out.getvalue(), err.getvalue())
