"""Minimal compatibility fixes for detectron2 v0.6's Python sources (pb1-detectron2==0.6).

Used only by the offline install in scripts/setup.sh, on an unpacked copy of the sdist. Each fix is
listed in docs/getting_started.md ("detectron2 offline"); every pattern must match, so a changed sdist fails loudly.

    python scripts/patch_detectron2.py PATH/TO/pb1-detectron2-0.6
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

MISSING_EXTENSION = '''"""Placeholder for detectron2's compiled extension (written by r2o's offline install).

This detectron2 was installed from its Python sources only (pb1-detectron2 0.6: its source
distribution has no C++/CUDA sources). Everything that needs the extension fails here, when called:
deformable convolution, rotated boxes / ROIAlignRotated and the fast COCO evaluator
(use COCOEvaluator(..., use_fast_impl=False)). To get them, install detectron2 from its git
repository (R2O_D2_SOURCE=git make setup) on a machine that reaches it.
"""


class MissingExtensionError(RuntimeError):
    pass


def get_compiler_version() -> str:
    return "not built (r2o offline install of detectron2's Python sources)"


def get_cuda_version() -> str:
    return "not built"


def has_cuda() -> bool:
    return False


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise MissingExtensionError(
        f"detectron2._C.{name} is not available: detectron2 was installed without its compiled "
        "C++ extension (offline install of v0.6's Python sources). Deformable conv, rotated boxes "
        "and COCOEvaluator(use_fast_impl=True) need it; install detectron2 from git "
        "(R2O_D2_SOURCE=git make setup) to use them."
    )
'''


def _sub(path: Path, pattern: str, repl: str, *, count_min: int = 1) -> int:
    text = path.read_text()
    new, n = re.subn(pattern, repl, text)
    if n < count_min:
        raise SystemExit(f"patch_detectron2: pattern {pattern!r} not found in {path}")
    path.write_text(new)
    return n


def patch(src: Path) -> list[str]:
    """Apply the fixes in place; returns one line per fix for the log."""
    done = []
    pkg = src / "detectron2"
    if not (src / "setup.py").is_file() or not pkg.is_dir():
        raise SystemExit(f"patch_detectron2: {src} is not an unpacked detectron2 source tree")

    # 1. Build no C++ extension: the sdist has no detectron2/layers/csrc.
    _sub(src / "setup.py", r"ext_modules=get_extensions\(\)", "ext_modules=[]")
    done.append("setup.py: ext_modules=[] (no C++ sources in the sdist)")

    # 2. Ship the model-zoo configs: setup.py globs them from a top-level configs/ folder.
    zoo = pkg / "model_zoo" / "configs"
    if zoo.is_dir() and not (src / "configs").exists():
        shutil.move(str(zoo), str(src / "configs"))
    done.append("model_zoo/configs moved to configs/ so that setup.py packages them")

    # 3. A placeholder for the compiled extension that raises a clear error when used.
    (pkg / "_C.py").write_text(MISSING_EXTENSION)
    done.append("detectron2/_C.py: placeholder raising MissingExtensionError when an op is called")

    # 4. numpy >= 1.24 removed the aliases np.bool / np.int / np.float.
    n = 0
    for f in sorted(pkg.rglob("*.py")):
        text = f.read_text()
        new, k = re.subn(r"\bnp\.(bool|int|float)\b(?![_\w])", r"\1", text)
        if k:
            f.write_text(new)
            n += k
    if n == 0:
        raise SystemExit("patch_detectron2: no np.bool/np.int/np.float found; is this v0.6?")
    done.append(f"np.bool/np.int/np.float -> bool/int/float ({n} places)")

    # 5. Pillow >= 10 removed Image.LINEAR (it was an alias of BILINEAR).
    _sub(pkg / "data" / "transforms" / "transform.py", r"Image\.LINEAR\b", "Image.BILINEAR")
    done.append("data/transforms/transform.py: Image.LINEAR -> Image.BILINEAR")
    return done


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    for line in patch(Path(argv[1])):
        print(f"  patched: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
