#!/usr/bin/env bash
# One command for the whole stack: creates .venv/ and installs torch, mmcv (compiled CPU ops),
# mmengine, mmsegmentation, openmim, detectron2, pycocotools, cityscapesscripts, fvcore and r2o itself.
#
# Idempotent: a second run only checks what is there (< 1 min). The slow part, mmcv's C++ build
# (10-40 min on 2 cores), is cached as a wheel outside git, in $R2O_CACHE_DIR (default ~/.cache/r2o).
#
# Usage: scripts/setup.sh [--pretrain-only]
#   --pretrain-only   only what pretraining imports (`make demo`): torch, torchvision, requirements/pretrain.txt
#                     (pinned by requirements/stack.txt) and r2o; no mmcv, mmseg, detectron2, pytest. A later
#                     run without it (`make setup`) adds the rest and keeps what is installed.
#
# Environment:
#   R2O_PYTHON        interpreter for the venv (default: python3.11, else python3)
#   R2O_VENV          venv folder (default: .venv in the repo root)
#   R2O_CACHE_DIR     where built wheels are kept (default: ~/.cache/r2o)
#   R2O_D2_SOURCE     auto | git | pypi-sources: where detectron2 comes from (default auto:
#                     git when its repository answers, else the registry's copy of v0.6's sources)
#   R2O_D2_GIT_REF    the detectron2 commit installed from git
set -Eeuo pipefail

MODE=full
for arg in "$@"; do
  case "$arg" in
    --pretrain-only) MODE=pretrain ;;
    -h|--help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "scripts/setup.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${R2O_VENV:-$ROOT/.venv}"
CACHE="${R2O_CACHE_DIR:-$HOME/.cache/r2o}"
D2_SOURCE="${R2O_D2_SOURCE:-auto}"
D2_GIT_URL="https://github.com/facebookresearch/detectron2.git"
D2_GIT_REF="${R2O_D2_GIT_REF:-2dde706855d87baa9760fbcd0bdb6004a3937204}"
TORCH_PIN="torch==2.14.1"
TORCHVISION_PIN="torchvision==0.29.1"
MMCV_VERSION="2.1.0"
D2_VERSION="0.6"

STEP="start"
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
step() { STEP="$1"; say "$1"; }
on_error() {
  local rc=$?
  printf '\033[1;31m[setup] FAILED at step: %s (exit %s)\033[0m\n' "$STEP" "$rc" >&2
  case "$STEP" in
    *mmcv*) echo "  mmcv's C++ build needs gcc/g++ (C++20) and ~2 GB RAM; see the log above. Remove $CACHE/wheels to rebuild from scratch." >&2 ;;
    *detectron2*) echo "  Offline installs use the registry's pb1-detectron2==$D2_VERSION sources; set R2O_D2_SOURCE=git to force git." >&2 ;;
    *torch*) echo "  torch comes from the registry (or this machine's wheel cache); check 'pip config list'." >&2 ;;
    *) ;;
  esac
  echo "  Fix the cause and run 'make setup' again: finished steps are skipped." >&2
  exit "$rc"
}
trap on_error ERR

PY_TAG="cp311"
step "python: choosing the interpreter"
PYTHON="${R2O_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 10), sys.version' \
  || { echo "Python >= 3.10 is needed (found $("$PYTHON" --version))" >&2; false; }
PY_TAG="cp$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"

step "venv: $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
VPY="$VENV/bin/python"

# pip < 26: pip 26 refuses pb1-detectron2's metadata (a direct-URL extra).
# setuptools < 81: 81+ dropped pkg_resources, which mim and detectron2.model_zoo import.
step "build tools: pip<26, setuptools>=77,<81, wheel, ninja"
"${PIP[@]}" install -q "pip>=25,<26" "setuptools>=77,<81" wheel ninja

step "torch: $TORCH_PIN $TORCHVISION_PIN"
"${PIP[@]}" install -q "$TORCH_PIN" "$TORCHVISION_PIN" "setuptools>=77,<81"

# ---- r2o itself and the import check: the last steps of both modes
install_r2o() {
  step "r2o (editable, with its console scripts)"
  "${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
}

# check_imports MODULE...: every module imports
check_imports() {
  step "check: every package imports"
  "$VPY" - "$@" <<'EOF'
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
import torch
line = f"torch {torch.__version__}"
if "mmseg" in sys.modules:
    import mmcv, mmengine, mmseg
    line += f", mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmseg {mmseg.__version__}"
print(line)
EOF
}

if [ "$MODE" = pretrain ]; then
  step "pretraining requirements: requirements/pretrain.txt (pinned by requirements/stack.txt)"
  "${PIP[@]}" install -q -r "$ROOT/requirements/pretrain.txt" -c "$ROOT/requirements/stack.txt" "setuptools>=77,<81"
  install_r2o
  check_imports torch torchvision skimage scipy cv2 timm tensorboard yaml tqdm \
    r2o_pretrain r2o_pretrain.build r2o_pretrain.engine.trainer r2o_pretrain.eval.online
  trap - ERR
  say "done (pretraining only; 'make setup' adds mmcv, mmseg, detectron2 and the test tools)"
  exit 0
fi
# ---- full mode from here on

step "pinned stack: requirements/stack.txt, nodeps.txt, dev.txt"
"${PIP[@]}" install -q -r "$ROOT/requirements/stack.txt" -r "$ROOT/requirements/dev.txt" "setuptools>=77,<81"
"${PIP[@]}" install -q --no-deps -r "$ROOT/requirements/nodeps.txt"

TORCH_VER="$("$VPY" -c 'import torch; print(torch.__version__.split("+")[0])')"
WHEELS="$CACHE/wheels/torch$TORCH_VER-$PY_TAG"
mkdir -p "$WHEELS"

# install_sdist_wheel DIR DIST VERSION WHEEL_NAME PREPARE_FN [VAR=VALUE ...]
# Installs DIR/WHEEL_NAME-VERSION-*.whl from the wheel cache; when the cache has none, builds it from the
# registry's source distribution (PREPARE_FN patches the unpacked tree; VAR=VALUE go to the build).
# DIR names what the wheel depends on beyond DIST==VERSION (the patch applied to it).
install_sdist_wheel() {
  local dir="$1" dist="$2" version="$3" wheel_name="$4" prepare="$5" wheel tmp start
  shift 5
  mkdir -p "$dir"
  wheel="$(ls "$dir/$wheel_name-$version"-*.whl 2>/dev/null | head -n 1 || true)"
  if [ -z "$wheel" ]; then
    say "  no cached $wheel_name wheel in $dir: building it from the source distribution"
    tmp="$(mktemp -d)"
    "${PIP[@]}" download -q --no-deps --no-build-isolation --no-binary :all: "$dist==$version" -d "$tmp"
    tar -xzf "$tmp/$dist-$version.tar.gz" -C "$tmp"
    "$prepare" "$tmp/$dist-$version"
    start=$(date +%s)
    (cd "$tmp/$dist-$version" && env "$@" "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$tmp/out" .)
    say "  $dist built in $(( $(date +%s) - start )) s"
    cp "$tmp/out/$wheel_name-"*.whl "$dir/"
    rm -rf "$tmp"
    wheel="$(ls "$dir/$wheel_name-$version"-*.whl | head -n 1)"
  else
    say "  using cached wheel $wheel"
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel"
}

# torch >= 2.5's ATen headers need C++20; mmcv 2.1.0's setup.py asks for C++17.
prepare_mmcv() {
  sed -i 's/-std=c++17/-std=c++20/g' "$1/setup.py"
  grep -q -- '-std=c++20' "$1/setup.py"
}

prepare_detectron2() {
  "$VPY" "$ROOT/scripts/patch_detectron2.py" "$1"
}

# The offline detectron2 is built from patched sources: its wheel is cached under the patch's id, and an
# installed copy counts only when it carries that id (detectron2/_r2o_patch.py), so that a changed
# scripts/patch_detectron2.py reaches an existing cache and venv. A git install (compiled _C) is not patched.
D2_PATCH_ID="$("$VPY" "$ROOT/scripts/patch_detectron2.py" --id)"
detectron2_installed() {
  "$VPY" - "$D2_PATCH_ID" 2>/dev/null <<'EOF'
import sys

import detectron2.modeling  # noqa: F401
from detectron2 import _C

if _C.__file__.endswith(".py"):  # r2o's offline install: the placeholder extension of patch_detectron2.py
    try:
        from detectron2 import _r2o_patch
    except ImportError:
        sys.exit(1)
    sys.exit(_r2o_patch.PATCH_ID != sys.argv[1])
EOF
}

step "mmcv $MMCV_VERSION with compiled ops (a first build takes 10-40 min on 2 cores; it is cached)"
if "$VPY" -c "import mmcv, mmcv.ops, sys; from mmcv.utils import ext_loader; ext_loader.load_ext('_ext', ['nms']); sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  say "  mmcv $MMCV_VERSION with ops already installed"
else
  install_sdist_wheel "$WHEELS" mmcv "$MMCV_VERSION" mmcv prepare_mmcv \
    MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" MAX_JOBS="${MAX_JOBS:-$(nproc)}"
fi

step "detectron2"
if detectron2_installed; then
  say "  detectron2 $("$VPY" -c 'import detectron2; print(detectron2.__version__)') already installed"
else
  if "$VPY" -c "import detectron2" 2>/dev/null; then
    say "  the installed detectron2 lacks the fixes of scripts/patch_detectron2.py (patch $D2_PATCH_ID): reinstalling it"
  fi
  if [ "$D2_SOURCE" = "auto" ]; then
    if timeout 15 git ls-remote --exit-code "$D2_GIT_URL" HEAD >/dev/null 2>&1; then D2_SOURCE=git; else D2_SOURCE=pypi-sources; fi
  fi
  if [ "$D2_SOURCE" = "git" ]; then
    step "detectron2 from git at $D2_GIT_REF (compiles its C++ extension)"
    "${PIP[@]}" install --no-build-isolation --no-deps "git+$D2_GIT_URL@$D2_GIT_REF"
  else
    step "detectron2 $D2_VERSION from the registry's Python sources (offline fallback, no C++ extension)"
    install_sdist_wheel "$WHEELS/detectron2-patch-$D2_PATCH_ID" pb1-detectron2 "$D2_VERSION" pb1_detectron2 prepare_detectron2
  fi
fi

install_r2o
check_imports torch torchvision detectron2 detectron2.modeling mmseg mmengine mmcv.ops \
  mim pycocotools cityscapesscripts fvcore shapely skimage timm tensorboard \
  r2o_pretrain r2o_d2 r2o_mmseg
trap - ERR
say "done. Activate with: source $VENV/bin/activate"
