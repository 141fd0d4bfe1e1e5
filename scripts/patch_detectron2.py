"""Minimal compatibility fixes for detectron2 v0.6's Python sources (pb1-detectron2==0.6).

Used only by the offline install in scripts/setup.sh, on an unpacked copy of the sdist. Each fix is
listed in docs/getting_started.md ("detectron2 offline"); every pattern must match, so a changed sdist fails loudly.
The patched tree carries ``detectron2/_r2o_patch.py`` with ``PATCH_ID`` (a hash of this file): setup.sh keeps the
built wheel under that id and reinstalls detectron2 when the installed copy was patched by another version of
this file, so that a changed fix reaches an existing wheel cache and venv.

    python scripts/patch_detectron2.py PATH/TO/pb1-detectron2-0.6
    python scripts/patch_detectron2.py --id       # prints PATCH_ID
"""

from __future__ import annotations

import hashlib
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


# numpy 1.24 removed these aliases of builtins (deprecated in 1.20; numpy 2 brought back np.bool and np.long
# as numpy types): name -> the builtin detectron2 meant
NUMPY_ALIASES = {"bool": "bool", "int": "int", "float": "float", "complex": "complex", "object": "object"}
NUMPY_ALIASES |= {"str": "str", "long": "int", "unicode": "str"}
NUMPY_ALIAS = re.compile(r"\bnp\.(" + "|".join(NUMPY_ALIASES) + r")\b(?![_\w])")


def patch_id() -> str:
    """What identifies this set of fixes: the first 16 hex digits of this file's sha256."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


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

    # 4. numpy >= 1.24 removed the aliases np.bool / np.int / np.float / np.str / ... (NUMPY_ALIASES).
    counts: dict[str, int] = {}
    for f in sorted(pkg.rglob("*.py")):
        text = f.read_text()
        for m in NUMPY_ALIAS.finditer(text):
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
        new = NUMPY_ALIAS.sub(lambda m: NUMPY_ALIASES[m.group(1)], text)
        if new != text:
            f.write_text(new)
    if not {"bool", "int", "float", "str"} <= set(counts):
        raise SystemExit(f"patch_detectron2: expected np.bool/np.int/np.float/np.str, found {counts}; is this v0.6?")
    found = ", ".join(f"np.{k} {n}" for k, n in sorted(counts.items()))
    done.append(f"removed numpy aliases -> builtins ({sum(counts.values())} places: {found})")

    # 4b. PASCAL VOC: np.loadtxt gives a 0-d array for a split file of one line, which the loader cannot iterate.
    _sub(
        pkg / "data" / "datasets" / "pascal_voc.py", r"np\.loadtxt\(f, dtype=str\)", "np.loadtxt(f, dtype=str, ndmin=1)"
    )
    done.append("data/datasets/pascal_voc.py: np.loadtxt(..., ndmin=1) (a split of one image loads)")

    # 5. Pillow >= 10 removed Image.LINEAR (it was an alias of BILINEAR).
    _sub(pkg / "data" / "transforms" / "transform.py", r"Image\.LINEAR\b", "Image.BILINEAR")
    done.append("data/transforms/transform.py: Image.LINEAR -> Image.BILINEAR")

    # 6. The marker that setup.sh compares with this file's patch_id().
    (pkg / "_r2o_patch.py").write_text(
        f'"""Written by r2o\'s scripts/patch_detectron2.py: which version of its fixes this detectron2 has."""\n\n'
        f'PATCH_ID = "{patch_id()}"\n'
    )
    done.append(f"detectron2/_r2o_patch.py: PATCH_ID {patch_id()}")
    return done


def main(argv: list[str]) -> int:
    if argv[1:] == ["--id"]:
        print(patch_id())
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    for line in patch(Path(argv[1])):
        print(f"  patched: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
