#!/usr/bin/env bash
# Create the venv of one tested stack and install its lock, then d2debug itself (pip install -e .).
#   default  .venv         Python 3.10, requirements-torch.txt + requirements.txt (sal-detectron2 0.7.2 ships only
#                          a CPython 3.10 wheel, built against torch 2.3.x)
#   modern   .venv-modern  Python 3.12, stacks/modern.txt (newest torch, numpy 2), detectron2 0.6 built from the
#                          registry's source distribution by scripts/build_detectron2.py
# Idempotent: does nothing when the venv is current (a stamp holds the hash of what it was built from).
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=${1:-default}
case "$STACK" in
  default) VENV=.venv; PYVER=3.10; LOCKS=(requirements-torch.txt requirements.txt);;
  modern) VENV=.venv-modern; PYVER=3.12; LOCKS=(stacks/modern.txt stacks/modern-detectron2.txt);;
  *) echo "error: STACK=$STACK: expected default or modern" >&2; exit 2;;
esac
STAMP=$VENV/.d2debug-requirements.sha256
want_hash=$(cat "${LOCKS[@]}" pyproject.toml scripts/build_detectron2.py scripts/setup_venv.sh | sha256sum | cut -d' ' -f1)
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

is_py() { [ -x "$1" ] && "$1" -c "import sys, venv; sys.exit(0 if sys.version_info[:2] == tuple(map(int, '$PYVER'.split('.'))) else 1)" 2>/dev/null; }

find_py() {
  local c
  for c in "$(command -v "python$PYVER" 2>/dev/null || true)"; do is_py "$c" && { echo "$c"; return; }; done
  if command -v pyenv >/dev/null 2>&1; then
    for c in "$(pyenv root)"/versions/"$PYVER"*/bin/"python$PYVER"; do is_py "$c" && { echo "$c"; return; }; done
  fi
  for c in "$HOME"/.pyenv/versions/"$PYVER"*/bin/"python$PYVER" /usr/bin/"python$PYVER" /usr/local/bin/"python$PYVER" \
           "$HOME"/.local/share/uv/python/cpython-"$PYVER"*/bin/"python$PYVER"; do
    is_py "$c" && { echo "$c"; return; }
  done
  if command -v uv >/dev/null 2>&1; then
    c=$(uv python find "$PYVER" 2>/dev/null || true)
    is_py "$c" && { echo "$c"; return; }
  fi
  return 1
}

if is_py "$VENV/bin/python" && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_hash" ]; then
  exit 0
fi
if ! is_py "$VENV/bin/python"; then
  py=$(find_py) || {
    echo "error: Python $PYVER not found (the $STACK stack needs it); install it, e.g. 'pyenv install $PYVER' or 'uv python install $PYVER', then run make again" >&2
    exit 1
  }
  echo "setup: creating $VENV with $py"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
fi
echo "setup: installing the $STACK stack into $VENV"
if [ "$STACK" = default ]; then
  "${PIP[@]}" install --quiet --upgrade "pip>=24,<26"
  "${PIP[@]}" install --quiet -r requirements-torch.txt -r requirements.txt
  # d2debug itself, its declared ranges checked against the lock.
  "${PIP[@]}" install --quiet -c requirements-torch.txt -c requirements.txt -e '.[test]'
  "$VENV/bin/python" -c 'from detectron2 import _C' || { echo "error: detectron2's compiled ops do not load in $VENV" >&2; exit 1; }
else
  # The lock is the constraint (it also replaces a machine-wide pip constraint, which PIP_CONSTRAINT overrides).
  export PIP_CONSTRAINT=$PWD/stacks/modern.txt
  # pip 25 and newer refuse pb1-detectron2's metadata (an extra names a URL); 24 downloads it.
  "${PIP[@]}" install --quiet --upgrade "pip>=24,<25"
  "${PIP[@]}" install --quiet torch torchvision setuptools wheel
  sdist=$(grep -v '^#' stacks/modern-detectron2.txt)
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/d2debug/detectron2-$(cat "${LOCKS[@]}" scripts/build_detectron2.py | sha256sum | cut -c1-16)
  if ! ls "$cache"/*.whl >/dev/null 2>&1; then
    echo "setup: building detectron2 from the source distribution $sdist"
    tmp=$(mktemp -d)
    "${PIP[@]}" download --quiet --no-deps --no-build-isolation --no-binary :all: -d "$tmp" "$sdist"
    "$VENV/bin/python" scripts/build_detectron2.py "$tmp"/*.tar.gz "$cache"
    rm -rf "$tmp"
  fi
  "${PIP[@]}" install --quiet "$cache"/*.whl -e '.[test]'
  PYTHONWARNINGS=ignore::FutureWarning "$VENV/bin/python" -c 'import detectron2.modeling, detectron2.engine, detectron2.export' \
    || { echo "error: detectron2 does not import in $VENV" >&2; exit 1; }
fi
echo "$want_hash" > "$STAMP"
echo "setup: done"
